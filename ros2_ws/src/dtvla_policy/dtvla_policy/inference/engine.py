"""The DeepThinkVLA inference engine: observation in; action chunk, chain-of-thought and timings out.

Modes (`Mode`):
  full        greedy CoT with a KV cache until `</think><action>`, then ONE pass of the 73-token action block on
              top of that cache (no second image encode, no prefix recompute; upstream re-runs everything);
  masked      empty `<think></think>`, then the action block: one forward pass (upstream get_vla_action_mask_cot);
  random      `<think>`, 128 uniform random ids, `</think>` (upstream's ablation), one pass;
  ar_actions  the 70 action tokens decoded one by one, causally (pi0-FAST-style latency baseline; the released
              weights were not trained for it);
  sample      CoT sampled at `cot_temperature`, actions at `action_temperature` over the 2048 action ids, with
              per-token log-probs (what GRPO rollouts need); `score` recomputes those log-probs teacher-forced,
              differentiably (what the GRPO loss needs).

CoT decoding follows upstream's `predict_cot_action` by default (`DecodeConfig`): the prefill is the prefix alone
(ending in ';' '\n'), so the model writes `<think>` itself; only the action ids and `<eos>` are banned. The opt-in
deviations `force_think_start` and `ban_extra_specials` restore this engine's former behaviour. A CoT that does not
close within `max_cot_tokens` is closed by force (`</think>` then `<action>`), logged, and flagged `cot_truncated`;
the action pass then runs as usual. No ROS imports here: the policy node, evaluation, training rollouts and tests
all call `PolicyEngine.predict` / `predict_batch`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from transformers import DynamicCache

from dtvla_policy.model.action_codec import ActionCodec
from dtvla_policy.model.checkpoint import Checkpoint, load_checkpoint
from dtvla_policy.model.conventions import (
    ACTION_DIM,
    ACTION_TOKENS,
    CAMERA_ORDER,
    CHUNK_STEPS,
    RANDOM_COT_MIN_ID,
    RANDOM_COT_TOKENS,
)
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.model.image_preprocessing import check_image, to_pixel_values
from dtvla_policy.model.sequence import ACTION_BLOCK_LEN, action_block_ids, prefix_ids, segments_for
from dtvla_policy.protocol import DecodeConfig, Mode

log = logging.getLogger(__name__)


class NonFiniteOutputError(FloatingPointError):
    """The model produced NaN or inf logits or hidden states: no chunk is made from them.

    An argmax over NaN logits picks bin 0, a finite, in-range and wrong action; this error stops that reaching an
    actuator. `stage` names where it was found ("cot" logits, "action" hidden states or logits), `rows` the
    affected samples of the batch. Usual causes: a corrupt checkpoint (NaN weights) or fp16 overflow (use bf16/fp32).
    """

    def __init__(self, stage: str, what: str, rows: list[int]) -> None:
        self.stage = stage
        self.rows = rows
        super().__init__(
            f"non-finite {what} in the {stage} stage (batch rows {rows}); no action chunk was produced. "
            "Check the checkpoint for NaN/inf weights, or run in float32/bfloat16 if this is float16 overflow"
        )


def check_finite(tensor: torch.Tensor, stage: str, what: str) -> None:
    """Raise `NonFiniteOutputError` unless every value of `tensor` (B, ...) is finite."""
    finite = torch.isfinite(tensor).reshape(tensor.shape[0], -1).all(-1)
    if not bool(finite.all()):
        raise NonFiniteOutputError(stage, what, (~finite).nonzero()[:, 0].tolist())


@dataclass(frozen=True)
class Observation:
    """One policy input: two HxWx3 uint8 camera images and the task instruction."""

    agentview: np.ndarray
    wrist: np.ndarray
    task: str


@dataclass
class Prediction:
    """One policy output. `actions` is the unnormalised (10, 7) chunk; the gripper is raw (sign it to execute).

    Two views of the CoT: `cot_segment_ids` is exactly what sat between the prefix and the action block (tags
    included; a teacher-forced replay needs it), `cot_token_ids` is the thought alone: the segment without its
    leading `<think>` (model-written or not) and its closing `</think>`, so its length means the same in every
    mode. `cot` is that thought as text, with no tags, for humans.
    """

    actions: np.ndarray
    cot: str
    timings: dict[str, float]
    mode: str
    action_tokens: np.ndarray  # (70,) int64
    cot_token_ids: list[int] = field(default_factory=list)
    cot_segment_ids: list[int] = field(default_factory=list)  # `<think>` ... `</think>` as fed
    cot_truncated: bool = False
    # sample mode: (len(cot_segment_ids) + 1,) log-probs of cot_segment_ids then `<action>`, every token as fed
    # (a model-written `<think>` included), under the CoT distribution (bans applied, at cot_temperature)
    cot_logprobs: np.ndarray | None = None
    action_logprobs: np.ndarray | None = None  # sample mode: (70,) log-probs at action_temperature

    @property
    def cot_tokens(self) -> int:
        return len(self.cot_token_ids)


@dataclass
class TokenScores:
    """Teacher-forced log-probs (and optionally entropies) of the tokens sampled predictions fed (`score`).

    cot_logprobs[b]: (len(cot_segment_ids[b]) + 1,) float32, the segment's tokens then `<action>`, as a sample-mode
    `Prediction.cot_logprobs`; action_logprobs: (B, 70) float32, as `Prediction.action_logprobs`. Both carry the
    graph when computed with grad enabled. The entropies (same shapes, detached) are those of the distributions
    the tokens were drawn from (bans applied, at the temperatures); None unless asked for.
    """

    cot_logprobs: list[torch.Tensor]
    action_logprobs: torch.Tensor
    cot_entropy: list[torch.Tensor] | None = None
    action_entropy: torch.Tensor | None = None


@dataclass
class _Batch:
    """Prepared inputs: image features and left-padded prefix ids with their segments."""

    image_features: torch.Tensor  # (B * n_img, T, hidden)
    prefixes: list[list[int]]
    timings: dict[str, float]


class PolicyEngine:
    """Runs a loaded checkpoint in any `Mode`; `predict` for one observation, `predict_batch` for several."""

    def __init__(self, checkpoint: Checkpoint, decode: DecodeConfig | None = None) -> None:
        self.ckpt = checkpoint
        self.model = checkpoint.model
        self.ids = checkpoint.token_ids
        self.codec = ActionCodec(self.ids)
        self.decode_config = decode or DecodeConfig()
        self.device = next(self.model.parameters()).device
        # Tags and specials never shown to humans in the CoT text (the released tokenizer may not mark them special).
        self._hidden_in_text = {self.ids.pad, self.ids.eos, self.ids.bos, self.ids.image, self.ids.think_start,
                                self.ids.think_end, self.ids.action_start, self.ids.action_end}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        dtype: str | torch.dtype | None = None,
        decode: DecodeConfig | None = None,
    ) -> PolicyEngine:
        return cls(load_checkpoint(path, device=device, dtype=dtype), decode)

    # ------------------------------------------------------------------------------------------ public API
    def predict(
        self, agentview: np.ndarray, wrist: np.ndarray, task: str, mode: str | Mode = Mode.FULL,
        decode: DecodeConfig | None = None,
    ) -> Prediction:
        return self.predict_batch([Observation(agentview, wrist, task)], mode, decode)[0]

    @torch.inference_mode()
    def predict_batch(
        self, observations: Sequence[Observation], mode: str | Mode = Mode.FULL, decode: DecodeConfig | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Predict one chunk per observation; samples are left-padded and run as one batch.

        `seeds` (sample and random modes): one per observation, overriding `decode.seed`. Each row then draws from
        its own generator, so what it samples does not depend on the other rows of its batch (GRPO rollouts batch
        whichever workers are waiting, and a resumed run must sample the same tokens).
        """
        mode = Mode.parse(mode)
        config = decode or self.decode_config
        if not observations:
            raise ValueError("predict_batch needs at least one observation")
        if seeds is not None and len(seeds) != len(observations):
            raise ValueError(f"{len(seeds)} seeds for {len(observations)} observations; give one per observation")
        start = time.perf_counter()
        prefixes = [self.prefix(obs.task) for obs in observations]  # refuse a bad task before any model work
        self.check_positions(max(len(p) for p in prefixes), mode, config)
        batch = self.prepare(observations, prefixes)
        generators = _generators(config.seed, seeds, len(observations))
        if mode in (Mode.FULL, Mode.SAMPLE):
            outputs = self._cot_then_actions(batch, config, sample=mode is Mode.SAMPLE, generators=generators)
        elif mode is Mode.AR_ACTIONS:
            outputs = self._autoregressive_actions(batch)
        else:
            outputs = self.one_pass_actions(batch, [self._fixed_cot(mode, g) for g in generators])
        predictions = self._finish(outputs, mode, batch.timings)
        total_ms = (time.perf_counter() - start) * 1e3
        for p in predictions:
            p.timings["total_ms"] = total_ms
        return predictions

    # ------------------------------------------------------------------------------------------ bounds
    @property
    def max_positions(self) -> int:
        """Positions the language model was built for (`max_position_embeddings`: 8192 for the released model)."""
        return int(self.model.config.get_text_config().max_position_embeddings)

    def prefix(self, task: str) -> list[int]:
        """The prefix ids of one observation: image slots, `<bos>`, the prompt (see `sequence.prefix_ids`)."""
        return prefix_ids(self.ckpt.tokenizer, self.ids, task, len(CAMERA_ORDER), self.ckpt.tokens_per_image)

    def max_cot_tokens_allowed(self, prefix_len: int) -> int:
        """The largest `max_cot_tokens` whose longest sequence still fits the model's positions.

        Longest sequence: prefix, `max_cot_tokens` written, the `</think>` a forced close appends, then the
        73-token action block (from `<action>`). Positions are 1-indexed, so a sequence of L tokens needs
        L <= max_positions - 1.
        """
        return self.max_positions - 1 - prefix_len - 1 - ACTION_BLOCK_LEN

    def check_positions(self, prefix_len: int, mode: Mode, config: DecodeConfig) -> None:
        """Refuse, before decoding, a prediction whose sequence could run past the model's positions."""
        allowed = self.max_cot_tokens_allowed(prefix_len)
        if mode in (Mode.FULL, Mode.SAMPLE) and config.max_cot_tokens > allowed:
            raise ValueError(
                f"max_cot_tokens={config.max_cot_tokens} exceeds the {allowed} the model's {self.max_positions} "
                f"positions allow after this prompt ({prefix_len} tokens) and the action block "
                f"({ACTION_BLOCK_LEN} tokens, plus a forced </think>); use at most {allowed}"
            )
        fixed_cot = {Mode.MASKED: 2, Mode.RANDOM: RANDOM_COT_TOKENS + 2, Mode.AR_ACTIONS: 2}.get(mode, 0)
        if fixed_cot - 1 > allowed:  # only a model with very few positions gets here
            raise ValueError(
                f"the {mode.value} sequence ({prefix_len} prompt tokens, {fixed_cot} CoT tokens, the "
                f"{ACTION_BLOCK_LEN}-token action block) does not fit the model's {self.max_positions} positions"
            )

    # ------------------------------------------------------------------------------------------ stages
    def prepare(self, observations: Sequence[Observation], prefixes: list[list[int]] | None = None) -> _Batch:
        """Validate and preprocess images (and tasks, unless their `prefixes` are given), then encode all images
        in one vision-tower call."""
        t0 = time.perf_counter()
        size = self.ckpt.image_size
        pixels = []
        for i, obs in enumerate(observations):
            for name, image in zip(CAMERA_ORDER, (obs.agentview, obs.wrist), strict=True):
                pixels.append(to_pixel_values(check_image(image, f"observation {i} {name}"), size))
        if prefixes is None:
            prefixes = [self.prefix(obs.task) for obs in observations]
        pixel_values = torch.stack(pixels).to(self.device, self.model.dtype)
        t1 = time.perf_counter()
        features = self.model.encode_images(pixel_values)
        t2 = time.perf_counter()
        return _Batch(features, prefixes, {"preprocess_ms": (t1 - t0) * 1e3, "vision_ms": (t2 - t1) * 1e3})

    def _left_pad(self, sequences: list[list[int]], segments: list[list[Segment]]) -> tuple[torch.Tensor, ...]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.ids.pad, dtype=torch.long)
        segs = torch.full((len(sequences), width), Segment.PAD, dtype=torch.long)
        for row, (seq, seg) in enumerate(zip(sequences, segments, strict=True)):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            segs[row, width - len(seq) :] = torch.tensor([int(s) for s in seg])
        return ids.to(self.device), segs.to(self.device)

    def one_pass_actions(self, batch: _Batch, cot_segments: list[list[int]]) -> dict:
        """[prefix, CoT segment, action block] in a single forward: masked/random modes, and the upstream-style
        recompute of the action pass. Each CoT segment is given as fed, tags included (`<think>` ... `</think>`)."""
        t0 = time.perf_counter()
        sequences, segments = [], []
        for prefix, body in zip(batch.prefixes, cot_segments, strict=True):
            sequences.append(prefix + body + action_block_ids(self.ids))
            segments.append(
                [Segment.PREFIX] * len(prefix) + [Segment.COT] * len(body) + [Segment.ACTION] * ACTION_BLOCK_LEN
            )
        ids, segs = self._left_pad(sequences, segments)
        out = self.model.hybrid_forward(ids, segs, batch.image_features, compute_logits=False)
        logits = self._action_logits(out.last_hidden_state[:, -ACTION_BLOCK_LEN:][:, :ACTION_TOKENS])
        tokens = self._pick_actions(logits)
        batch.timings["action_ms"] = (time.perf_counter() - t0) * 1e3
        return {"action_tokens": tokens, "action_logits": logits, "cot_segments": cot_segments,
                "truncated": [False] * len(cot_segments)}

    def _fixed_cot(self, mode: Mode, generator: torch.Generator) -> list[int]:
        """The CoT segment of `masked` (`<think></think>`) or `random` (`<think>`, 128 uniform ids, `</think>`)."""
        if mode is Mode.MASKED:
            body = []
        else:  # upstream get_vla_action_mask_cot_random: uniform over [0, 220000) on the released vocabulary
            high = self.ids.random_cot_max_id
            body = torch.randint(RANDOM_COT_MIN_ID, high, (RANDOM_COT_TOKENS,), generator=generator).tolist()
        return [self.ids.think_start, *body, self.ids.think_end]

    def cot_ban(self, config: DecodeConfig, think_written: bool = False) -> torch.Tensor:
        """(vocab,) bool: ids the CoT may not take next. Upstream bans the action ids and `<eos>` only;
        `ban_extra_specials` adds pad, bos, `<image>`, `</action>` and, once it is in the sequence, `<think>`."""
        ban = torch.zeros(self.ids.vocab_size, dtype=torch.bool, device=self.device)
        ban[self.ids.action_begin : self.ids.action_end_id + 1] = True
        ban[self.ids.eos] = True
        if config.ban_extra_specials:
            ban[[self.ids.pad, self.ids.bos, self.ids.image, self.ids.action_end]] = True
            ban[self.ids.think_start] = think_written
        return ban

    def generate_cot(
        self, batch: _Batch, config: DecodeConfig, sample: bool = False,
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict:
        """Prefill the prefix with a KV cache and decode the CoT segment until `</think><action>` or the cap.

        The first CoT token comes from the last prefix position (';' '\\n'), as in upstream's `generate`; with
        `force_think_start` the prefill also holds `<think>`. `max_cot_tokens` counts what upstream's
        `max_new_tokens` counts: every token after the prefix up to and including `<action>` (a prefilled
        `<think>` counts too). A segment not closed within it gets `</think>` (unless it already ends with one)
        and `<action>` appended by force, beyond the cap, and is flagged truncated.
        `<action>` is not fed here: the cached action block starts with it.

        Returns the cache, the segments of everything in it, per-sample CoT segments (`<think>` ... `</think>`,
        as fed), truncation flags and, when sampling, the log-probs of each segment token then `<action>`.
        `generators`: one per row when sampling (rows may share one; see `_draw`).
        """
        t0 = time.perf_counter()
        n = len(batch.prefixes)
        head = [self.ids.think_start] if config.force_think_start else []
        ids, segs = self._left_pad(
            [p + head for p in batch.prefixes],
            [[Segment.PREFIX] * len(p) + [Segment.COT] * len(head) for p in batch.prefixes],
        )
        cache = DynamicCache(config=self.model.config.get_text_config())
        out = self.model.hybrid_forward(
            ids, segs, batch.image_features, past_key_values=cache, use_cache=True, logits_to_keep=1 + len(head)
        )
        t1 = time.perf_counter()
        bans = torch.stack([self.cot_ban(config, False), self.cot_ban(config, True)])
        written: list[list[int]] = [list(head) for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        if head and sample:  # the prefilled `<think>` is fed too: its log-prob under the model, for replay
            log_p = torch.log_softmax(self._cot_logits(out.logits[:, 0], [[]] * n, bans)
                                      / config.cot_temperature, dim=-1)
            for row in range(n):
                logprobs[row].append(float(log_p[row, self.ids.think_start]))
        truncated = [False] * n
        done = [False] * n
        logits = out.logits[:, -1]
        while True:
            logits = self._cot_logits(logits, written, bans)
            if sample:
                log_p = torch.log_softmax(logits / config.cot_temperature, dim=-1)
                chosen = _draw(log_p.exp(), generators, [not d for d in done]).tolist()
            else:
                chosen = logits.argmax(-1).cpu().tolist()
            for row, token in enumerate(chosen):
                if done[row]:
                    continue
                closing = bool(written[row]) and written[row][-1] == self.ids.think_end
                if len(written[row]) >= config.max_cot_tokens:  # cap reached without `</think><action>`
                    truncated[row] = True
                    token = self.ids.action_start if closing else self.ids.think_end
                if sample:
                    logprobs[row].append(float(log_p[row, token]))
                if closing and token == self.ids.action_start:
                    done[row] = True  # `<action>` opens the action block: it is not fed here
                else:
                    written[row].append(token)
            if all(done):
                break
            feed = torch.tensor([self.ids.pad if d else w[-1] for d, w in zip(done, written, strict=True)])
            feed_seg = torch.tensor([Segment.PAD if d else Segment.COT for d in done])
            step = self.model.hybrid_forward(
                feed[:, None].to(self.device), feed_seg[:, None].to(self.device),
                past_key_values=cache, past_segments=segs, use_cache=True, logits_to_keep=1,
            )
            segs = torch.cat([segs, feed_seg[:, None].to(self.device)], dim=1)
            logits = step.logits[:, -1]
        t2 = time.perf_counter()
        batch.timings.update({"prefill_ms": (t1 - t0) * 1e3, "cot_ms": (t2 - t1) * 1e3})
        for row, cut in enumerate(truncated):
            if cut:
                log.warning("CoT of sample %d hit max_cot_tokens=%d without </think><action>; closed by force",
                            row, config.max_cot_tokens)
        return {"cache": cache, "segments": segs, "cot_segments": written, "truncated": truncated,
                "cot_logprobs": logprobs}

    def score(
        self, observations: Sequence[Observation], cot_segments: Sequence[Sequence[int]],
        action_tokens: Sequence[Sequence[int]] | np.ndarray | torch.Tensor, decode: DecodeConfig | None = None,
        entropy: bool = False,
    ) -> TokenScores:
        """Teacher-forced log-probs of what `sample` predictions fed, under the same distributions (bans, both
        temperatures of `decode`): each CoT segment then `<action>`, and the 70 action tokens.

        One uncached forward per row over the training layout, [prefix, segment, `<action>` a1..a70 `</action>`
        `<eos>`] with the hybrid mask (upstream's `forward(cot_length=...)` recompute): the CoT rows are causal and
        see nothing of the action block, and the action ids are zero-embedded, so the values equal the cached
        sampling passes' up to float rounding (tested). Images are encoded inside, so with grad enabled the result
        differentiates through the whole model, vision tower included (what a policy-gradient step needs).
        """
        config = decode or self.decode_config
        n = len(observations)
        if not len(cot_segments) == len(action_tokens) == n:
            raise ValueError(f"{n} observations, {len(cot_segments)} CoT segments and {len(action_tokens)} action "
                             "token rows: give one of each per observation")
        actions = torch.as_tensor(np.asarray(action_tokens, dtype=np.int64), device=self.device)
        if actions.shape != (n, ACTION_TOKENS):
            raise ValueError(f"action tokens must be ({n}, {ACTION_TOKENS}), got {tuple(actions.shape)}")
        prefixes = [self.prefix(obs.task) for obs in observations]
        batch = self.prepare(observations, prefixes)
        sequences, segments = [], []
        for prefix, body, row in zip(prefixes, cot_segments, actions.tolist(), strict=True):
            sequences.append(prefix + list(body) + action_block_ids(self.ids, row))
            segments.append(segments_for(len(prefix), len(body), ACTION_BLOCK_LEN))
        ids, segs = self._left_pad(sequences, segments)
        hidden = self.model.hybrid_forward(ids, segs, batch.image_features, compute_logits=False).last_hidden_state
        # Action rows `<action>`, a1..a69 predict a1..a70; every row ends with the action block (left padding).
        action_log_p = torch.log_softmax(
            self._action_logits(hidden[:, -ACTION_BLOCK_LEN:][:, :ACTION_TOKENS]).float() / config.action_temperature,
            dim=-1,
        )
        action_lp = action_log_p.gather(-1, (actions - self.ids.action_begin)[..., None])[..., 0]
        # CoT rows: from the prefix's last row (it predicts the segment's first token) to the segment's last row
        # (it predicts `<action>`).
        rows, targets, think_written = [], [], []
        width = ids.shape[1]
        for b, body in enumerate(cot_segments):
            fed = [*body, self.ids.action_start]
            first = width - ACTION_BLOCK_LEN - len(body) - 1
            rows.append(hidden[b, first : first + len(fed)])
            targets += fed
            think_written += [self.ids.think_start in fed[:j] for j in range(len(fed))]
        bans = torch.stack([self.cot_ban(config, False), self.cot_ban(config, True)])
        logits = self.model.lm_logits(torch.cat(rows)).float()
        think = torch.tensor(think_written, device=self.device).long()
        cot_log_p = torch.log_softmax(logits.masked_fill(bans[think], float("-inf")) / config.cot_temperature, dim=-1)
        target_ids = torch.tensor(targets, device=self.device)[:, None]
        lengths = [len(body) + 1 for body in cot_segments]
        scores = TokenScores(list(cot_log_p.gather(-1, target_ids)[:, 0].split(lengths)), action_lp)
        if entropy:
            with torch.no_grad():
                scores.cot_entropy = list(torch.special.entr(cot_log_p.exp()).sum(-1).split(lengths))
                scores.action_entropy = torch.special.entr(action_log_p.exp()).sum(-1)
        return scores

    def _cot_logits(self, logits: torch.Tensor, written: list[list[int]], bans: torch.Tensor) -> torch.Tensor:
        """(B, vocab) next-token logits -> float32 with banned ids at -inf (HF `generate` also works in fp32).

        `bans` is (2, vocab): `cot_ban` before and after `<think>` is in a row's sequence.
        """
        check_finite(logits, "cot", "logits")  # before the bans: NaN would survive them and argmax to id 0
        think_written = torch.tensor([self.ids.think_start in w for w in written], device=self.device)
        return logits.float().masked_fill(bans[think_written.long()], float("-inf"))

    def cached_action_pass(self, cot: dict) -> dict:
        """The 73-token action block in one pass on top of the CoT's KV cache (the engine's fast path)."""
        t0 = time.perf_counter()
        n = cot["segments"].shape[0]
        block = torch.tensor([action_block_ids(self.ids)] * n, device=self.device)
        block_seg = torch.full_like(block, Segment.ACTION)
        out = self.model.hybrid_forward(
            block, block_seg, past_key_values=cot["cache"], past_segments=cot["segments"], use_cache=True,
            compute_logits=False,
        )
        cot["cache"].crop(-ACTION_BLOCK_LEN)  # the cache holds prefix + CoT again
        logits = self._action_logits(out.last_hidden_state[:, :ACTION_TOKENS])
        return {"action_logits": logits, "action_ms": (time.perf_counter() - t0) * 1e3}

    def _cot_then_actions(
        self, batch: _Batch, config: DecodeConfig, sample: bool, generators: list[torch.Generator]
    ) -> dict:
        cot = self.generate_cot(batch, config, sample=sample, generators=generators)
        action = self.cached_action_pass(cot)
        batch.timings["action_ms"] = action["action_ms"]
        logits = action["action_logits"]
        outputs = {"cot_segments": cot["cot_segments"], "truncated": cot["truncated"], "action_logits": logits}
        if sample:
            tokens, action_logprobs = self._sample_actions(logits, config.action_temperature, generators)
            outputs.update(action_tokens=tokens, action_logprobs=action_logprobs, cot_logprobs=cot["cot_logprobs"])
        else:
            outputs["action_tokens"] = self._pick_actions(logits)
        return outputs

    def _autoregressive_actions(self, batch: _Batch) -> dict:
        """pi0-FAST-style baseline: prefill [prefix, `<think></think><action>`], then 70 single-token steps."""
        t0 = time.perf_counter()
        head = [self.ids.think_start, self.ids.think_end, self.ids.action_start]
        ids, segs = self._left_pad(
            [p + head for p in batch.prefixes], [[Segment.PREFIX] * len(p) + [Segment.COT] * 3 for p in batch.prefixes]
        )
        cache = DynamicCache(config=self.model.config.get_text_config())
        out = self.model.hybrid_forward(ids, segs, batch.image_features, past_key_values=cache, use_cache=True,
                                        compute_logits=False)
        hidden = out.last_hidden_state[:, -1:]
        t1 = time.perf_counter()
        tokens = []
        for _ in range(ACTION_TOKENS):
            token = self._pick_actions(self._action_logits(hidden))  # (B, 1) ids
            tokens.append(token)
            step_seg = torch.full_like(token, Segment.COT)
            out = self.model.hybrid_forward(token, step_seg, past_key_values=cache, past_segments=segs,
                                            use_cache=True, compute_logits=False)
            segs = torch.cat([segs, step_seg], dim=1)
            hidden = out.last_hidden_state
        batch.timings.update({"prefill_ms": (t1 - t0) * 1e3, "action_ms": (time.perf_counter() - t1) * 1e3})
        n = len(batch.prefixes)
        return {"action_tokens": torch.cat(tokens, dim=1), "cot_segments": [head[:2] for _ in range(n)],
                "truncated": [False] * n}

    def _action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, N, hidden) action-row hidden states -> (B, N, 2048) logits, both checked finite: a soft-capped head
        would turn inf hidden states into finite logits, and NaN logits into an argmax of bin 0."""
        check_finite(hidden, "action", "hidden states")
        logits = self.model.action_logits(hidden)
        check_finite(logits, "action", "logits")
        return logits

    def _pick_actions(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., 2048) action-subvocabulary logits -> (...) action token ids (greedy)."""
        return logits.argmax(-1) + self.ids.action_begin

    def _sample_actions(
        self, logits: torch.Tensor, temperature: float, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, 70, 2048)
        index = _draw(log_p.exp(), generators)
        chosen = log_p.gather(-1, index.to(log_p.device)[..., None])[..., 0]
        return index.to(logits.device) + self.ids.action_begin, chosen

    def _finish(self, outputs: dict, mode: Mode, timings: dict[str, float]) -> list[Prediction]:
        """Action tokens -> bins -> normalised values -> raw actions; CoT ids -> text."""
        t0 = time.perf_counter()
        tokens = outputs["action_tokens"].cpu().numpy().reshape(-1, ACTION_TOKENS)
        normalised = self.codec.decode(tokens).reshape(-1, CHUNK_STEPS, ACTION_DIM)
        actions = self.ckpt.normalizer.unnormalize(normalised)
        if not np.all(np.isfinite(actions)):  # cannot happen with finite stats; never let it reach an actuator
            raise NonFiniteOutputError("decode", "actions", np.flatnonzero(~np.isfinite(actions).reshape(
                len(actions), -1).all(-1)).tolist())
        decode_ms = (time.perf_counter() - t0) * 1e3
        predictions = []
        for row, segment in enumerate(outputs["cot_segments"]):
            thought = self._thought(segment)
            prediction = Prediction(
                actions=actions[row],
                cot=self.cot_text(thought),
                timings={**timings, "decode_ms": decode_ms},
                mode=mode.value,
                action_tokens=tokens[row],
                cot_token_ids=thought,
                cot_segment_ids=list(segment),
                cot_truncated=outputs["truncated"][row],
            )
            if "action_logprobs" in outputs:
                prediction = replace(
                    prediction,
                    cot_logprobs=np.asarray(outputs["cot_logprobs"][row], dtype=np.float32),
                    action_logprobs=outputs["action_logprobs"][row].float().cpu().numpy(),
                )
            predictions.append(prediction)
        return predictions

    def _thought(self, segment: list[int]) -> list[int]:
        """A CoT segment without its leading `<think>` (whoever wrote it) and its closing `</think>`."""
        start = 1 if segment[:1] == [self.ids.think_start] else 0
        end = len(segment) - 1 if segment[-1:] == [self.ids.think_end] else len(segment)
        return list(segment[start:end])

    def cot_text(self, token_ids: Sequence[int]) -> str:
        """CoT ids -> text for humans: tags and specials dropped by id (robust to tokenizers not marking them)."""
        kept = [t for t in token_ids if t not in self._hidden_in_text]
        return self.ckpt.tokenizer.decode(kept, skip_special_tokens=True).strip()


def _generators(seed: int | None, seeds: Sequence[int] | None, n: int) -> list[torch.Generator]:
    """One generator per row: its own when `seeds` are given, else one shared, seeded with `seed` (None: fresh)."""
    if seeds is not None:
        return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    shared = torch.Generator(device="cpu")
    if seed is not None:
        shared.manual_seed(seed)
    else:
        shared.seed()
    return [shared] * n


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator], active: Sequence[bool] | None = None
          ) -> torch.Tensor:
    """(B, ..., V) probabilities -> (B, ...) sampled indices on the CPU.

    Rows sharing one generator are drawn in one call, every row included. With a generator per row, each row draws
    from its own, and only `active` rows draw (the others get -1): a row's draws then depend on nothing but its own
    tokens, whatever the batch around it.
    """
    probs = probs.cpu()
    if all(g is generators[0] for g in generators):
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generators[0]).reshape(probs.shape[:-1])
    index = torch.full(probs.shape[:-1], -1, dtype=torch.long)
    for row, generator in enumerate(generators):
        if active is None or active[row]:
            flat = probs[row].reshape(-1, probs.shape[-1])
            index[row] = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[1:-1])
    return index
