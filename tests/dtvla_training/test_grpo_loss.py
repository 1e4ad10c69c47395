"""GRPO arithmetic against hand-computed values: advantages, the asymmetric and dual clip, the k3 KL, and the
three loss aggregations (upstream's slice-weighted token sum among them)."""

import math

import pytest
import torch

from dtvla_training.grpo.loss import LossAggMode, aggregate, group_advantages, k3_kl, ppo_token_losses


def test_group_advantages_are_normalised_per_group_with_the_unbiased_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0],  # mean 0.25, unbiased std sqrt(0.75 / 3) = 0.5
                            [1.4, 0.4, 1.4, 0.4],  # mean 0.9, std sqrt(4 * 0.25 / 3) = 0.57735
                            [1.0, 1.0, 1.0, 1.0]])  # no spread: nothing to learn
    advantages = group_advantages(rewards)
    eps = 1e-6
    torch.testing.assert_close(advantages[0], torch.tensor([0.75, -0.25, -0.25, -0.25]) / (0.5 + eps))
    torch.testing.assert_close(advantages[1], torch.tensor([0.5, -0.5, 0.5, -0.5]) / (math.sqrt(1 / 3) + eps))
    torch.testing.assert_close(advantages[2], torch.zeros(4))


def test_a_group_of_one_keeps_its_reward():
    torch.testing.assert_close(group_advantages(torch.tensor([[1.4], [0.0]])),
                               torch.tensor([[1.4], [0.0]]) / (1 + 1e-6))


@pytest.mark.parametrize(("advantage", "ratio", "loss", "clipped", "dual"), [
    (1.0, 1.2, -1.2, False, False),   # inside [0.8, 1.28]: the plain ratio
    (1.0, 1.5, -1.28, True, False),   # A > 0, ratio above 1 + 0.28: clipped from above
    (1.0, 0.5, -0.5, False, False),   # A > 0, ratio below 1 - 0.2: the unclipped term is the pessimistic one
    (-1.0, 0.5, 0.8, True, False),    # A < 0, ratio below 0.8: clipped from below
    (-1.0, 1.1, 1.1, False, False),   # A < 0 inside the range
    (-1.0, 5.0, 3.0, False, True),    # A < 0, ratio 5: the dual clip caps the loss at -A * 3
    (-2.0, 2.0, 4.0, False, False),   # A < 0, ratio 2 < 3: below the dual clip's bound
    (0.0, 9.0, 0.0, False, False),    # no advantage, no loss
])
def test_ppo_token_loss_clips_asymmetrically_and_dual_clips_negative_advantages(advantage, ratio, loss, clipped,
                                                                                  dual):
    old = torch.tensor([-2.0])
    logp = old + math.log(ratio)
    got, got_clipped, got_dual = ppo_token_losses(logp, old, torch.tensor([advantage]))
    assert float(got) == pytest.approx(loss, abs=1e-6)
    assert (bool(got_clipped), bool(got_dual)) == (clipped, dual)


def test_the_dual_clip_constant_must_exceed_one():
    with pytest.raises(ValueError, match="dual-clip constant must be > 1"):
        ppo_token_losses(torch.zeros(1), torch.zeros(1), torch.ones(1), clip_c=1.0)


def test_k3_kl_is_zero_at_equal_policies_and_matches_its_formula():
    logp = torch.tensor([-1.0, -1.0, -3.0, 0.0])
    ref = torch.tensor([-1.0, -2.0, -1.0, -30.0])
    expected = [0.0, math.exp(-1) + 1 - 1, math.exp(2) - 2 - 1, 10.0]  # the last one clamped from ~29
    torch.testing.assert_close(k3_kl(logp, ref), torch.tensor(expected))


TOKENS = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
MASK = torch.tensor([True, True, False, True, True])
SLICES = torch.tensor([0, 0, 0, 1, 1])


def test_upstream_token_sum_weights_each_slice_by_its_share_of_the_tokens():
    # slice 0: sum 3 over 2 valid tokens; slice 1: sum 9 over 2; N = 4 -> (3 * 2 + 9 * 2) / 4 = 6 (not the sum 12)
    assert float(aggregate(TOKENS, MASK, SLICES, LossAggMode.SEQ_MEAN_TOKEN_SUM)) == pytest.approx(6.0)
    one_slice = torch.zeros(5, dtype=torch.long)
    assert float(aggregate(TOKENS, MASK, one_slice, LossAggMode.SEQ_MEAN_TOKEN_SUM)) == pytest.approx(12.0)
    uneven = torch.tensor([0, 1, 1, 1, 1])  # (1 * 1 + 11 * 3) / 4 = 8.5
    assert float(aggregate(TOKENS, MASK, uneven, LossAggMode.SEQ_MEAN_TOKEN_SUM)) == pytest.approx(8.5)


def test_token_means_per_trajectory_and_over_the_mini_batch():
    assert float(aggregate(TOKENS, MASK, SLICES, LossAggMode.SEQ_MEAN_TOKEN_MEAN)) == pytest.approx(3.0)
    # token-mean: a second trajectory with one valid token of loss 10; mini-batch of 2 trajectories, 5 tokens
    other = aggregate(torch.tensor([10.0]), torch.tensor([True]), torch.tensor([0]), LossAggMode.TOKEN_MEAN, 2 / 5)
    mine = aggregate(TOKENS, MASK, SLICES, LossAggMode.TOKEN_MEAN, 2 / 5)
    assert float((mine + other) / 2) == pytest.approx((12.0 + 10.0) / 5)  # the trainer's mean over trajectories
    with pytest.raises(ValueError, match="token_mean_scale"):
        aggregate(TOKENS, MASK, SLICES, LossAggMode.TOKEN_MEAN)


def test_invalid_tokens_contribute_nothing_even_when_not_finite():
    tokens = torch.tensor([1.0, float("inf"), float("nan")])
    mask = torch.tensor([True, False, False])
    for mode in LossAggMode:
        loss = aggregate(tokens, mask, torch.zeros(3, dtype=torch.long), mode, 1.0)
        assert float(loss) == pytest.approx(1.0)


def test_gradients_flow_only_through_valid_tokens():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    loss, _, _ = ppo_token_losses(logp, logp.detach(), torch.tensor([1.0, 1.0, -1.0]))
    aggregate(loss, torch.tensor([True, False, True]), torch.zeros(3, dtype=torch.long),
              LossAggMode.SEQ_MEAN_TOKEN_SUM).backward()
    torch.testing.assert_close(logp.grad, torch.tensor([-1.0, 0.0, 1.0]))  # d(-A * ratio)/d logp = -A at ratio 1
