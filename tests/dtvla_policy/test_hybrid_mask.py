"""The hybrid mask pattern, checked entry by entry on a small hand-written layout."""

import torch

from dtvla_policy.model.hybrid_mask import Segment, additive_mask, allowed_attention, position_ids

P, C, A, PAD = Segment.PREFIX, Segment.COT, Segment.ACTION, Segment.PAD


def expected_allowed(segments: list[Segment]) -> torch.Tensor:
    """The rule of upstream's _update_causal_mask, written as plainly as possible."""
    n = len(segments)
    out = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        for k in range(n):
            if segments[q] == PAD:
                out[q, k] = q == k
            elif segments[k] == PAD:
                out[q, k] = False
            elif segments[q] == A:
                out[q, k] = True  # action rows see everything that is not padding
            elif segments[k] == A:
                out[q, k] = False  # nothing before the block sees it
            elif segments[k] == P:
                out[q, k] = True  # prefix columns are visible to every row
            else:
                out[q, k] = k <= q  # CoT is causal
    return out


def test_pattern_matches_upstream_rule():
    layouts = [
        [P, P, P, C, C, C, A, A, A],
        [PAD, PAD, P, P, C, C, C, A, A],  # left padding
        [P, P, C, PAD, PAD, A, A, A, A],  # a sample whose CoT finished early in a batch
    ]
    segments = torch.tensor([[int(s) for s in layout] for layout in layouts])
    allowed = allowed_attention(segments)
    for row, layout in enumerate(layouts):
        assert torch.equal(allowed[row], expected_allowed(layout)), layout


def test_cached_queries_are_the_last_rows_of_the_full_mask():
    segments = torch.tensor([[int(s) for s in [PAD, P, P, C, C, A, A, A]]])
    full = allowed_attention(segments)
    assert torch.equal(allowed_attention(segments, query_len=3), full[:, -3:])


def test_additive_mask_is_float_with_finfo_min():
    allowed = allowed_attention(torch.tensor([[int(s) for s in [P, C, A]]]))
    mask = additive_mask(allowed, torch.float32)
    assert mask.shape == (1, 1, 3, 3) and mask.dtype == torch.float32
    assert mask[0, 0, 0, 1] == torch.finfo(torch.float32).min and mask[0, 0, 2, 0] == 0


def test_positions_are_one_indexed_and_skip_pads():
    segments = torch.tensor([[int(s) for s in [PAD, PAD, P, P, C, PAD, A]]])
    assert position_ids(segments).tolist() == [[1, 1, 1, 2, 3, 3, 4]]
