"""The GRPO objective on real sampled steps of the tiny model (no simulator): the token layout and its masks, the
loss at ratio 1, slices checkpointed or not, gradients through the whole model, and the reward's format check."""

import numpy as np
import pytest
import torch

from dtvla_policy.inference.engine import DecodeConfig, Observation, PolicyEngine
from dtvla_policy.model.checkpoint import load_checkpoint
from dtvla_training.grpo.loss import LossAggMode
from dtvla_training.grpo.objective import STAT_NAMES, GrpoObjective, LossSettings
from dtvla_training.grpo.reward import keep_group, trajectory_reward, well_formed
from dtvla_training.grpo.trajectory import StepRecord, Trajectory, action_mask, token_layout
from tests.fixtures.checkpoints import camera_image

DECODE = DecodeConfig(max_cot_tokens=5)
TASK = "put the bowl on the plate"


def sampled_trajectory(engine: PolicyEngine, n_steps: int, env_steps: int, seed: int = 0) -> Trajectory:
    """A trajectory of `n_steps` chunks sampled on random images, as the rollout policy records them."""
    observations = [Observation(camera_image(seed + k, 64), camera_image(seed + k + 100, 64), TASK)
                    for k in range(n_steps)]
    predictions = engine.predict_batch(observations, "sample", DECODE, seeds=[seed + k for k in range(n_steps)])
    steps = [StepRecord(obs.agentview, obs.wrist, 10 * k, list(p.cot_segment_ids), p.action_tokens.astype(np.int64),
                        p.cot_logprobs, p.action_logprobs, p.cot_tokens, p.cot_truncated, False)
             for k, (obs, p) in enumerate(zip(observations, predictions, strict=True))]
    return Trajectory(task=0, init_state=0, rollout=0, instruction=TASK, steps=steps, success=False,
                      env_steps=env_steps)


@pytest.fixture()
def objective(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    objective = GrpoObjective(ckpt.model)
    objective.scorer = PolicyEngine(ckpt, DECODE)
    return objective


def settings(mode: LossAggMode, slice_steps: int) -> LossSettings:
    return LossSettings(decode=DECODE, mode=mode, slice_steps=slice_steps, clip_low=0.2, clip_high=0.28, clip_c=3.0)


def test_action_mask_keeps_the_executed_actions_only():
    assert action_mask(start=0, env_steps=23).all()
    last = action_mask(start=20, env_steps=23)  # the episode ended 3 steps into this chunk
    assert last.sum() == 3 * 7 and last[: 3 * 7].all() and not last[3 * 7 :].any()
    assert action_mask(start=0, env_steps=100, execute_steps=4).sum() == 4 * 7  # only 4 actions of a chunk run


def test_token_layout_masks_forced_cot_tokens_and_actions_after_the_end():
    step = StepRecord(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), 0, [1] * 6, np.zeros(70),
                      np.zeros(7), np.zeros(70), 5, True, False)
    steps = [step, StepRecord(**{**step.__dict__, "start": 10, "cot_segment": [1, 2]})]
    layout = token_layout(steps, env_steps=12, max_cot_tokens=5, slice_steps=1)
    assert layout.offsets == (0, 7 + 70, 7 + 70 + 3 + 70)
    first, second = layout.mask[:77], layout.mask[77:]
    assert first[:5].all() and not first[5:7].any()  # targets 5 and 6 were forced beyond the cap of 5
    assert first[7:].all()
    assert second[:3].all() and second[3:].sum() == 2 * 7  # 2 of the chunk's actions ran before the end
    assert layout.slices.tolist() == [0] * 77 + [1] * 73
    assert layout.is_action.sum() == 140 and not layout.is_action[:7].any()


def test_loss_at_ratio_one_is_minus_the_advantage_per_valid_token(objective):
    trajectory = sampled_trajectory(objective.scorer, n_steps=2, env_steps=15)
    trajectory.layout = token_layout(trajectory.steps, 15, DECODE.max_cot_tokens, slice_steps=8)
    trajectory.old_logprobs = trajectory.sampling_logprobs()
    trajectory.advantage = -0.7
    out = objective(trajectory, settings(LossAggMode.SEQ_MEAN_TOKEN_SUM, 8))
    valid = int(trajectory.layout.mask.sum())
    stats = dict(zip(STAT_NAMES, out.stats.tolist(), strict=True))
    assert float(out.loss.detach()) == pytest.approx(0.7 * valid, rel=1e-4)  # -A x ratio summed over valid tokens
    assert stats["valid_tokens"] == valid and stats["clipped"] == 0
    assert abs(stats["ppo_kl_sum"]) < 1e-3  # same weights: the recomputation agrees with the sampling


def test_kl_to_an_identical_reference_adds_nothing(objective):
    trajectory = sampled_trajectory(objective.scorer, n_steps=1, env_steps=10, seed=3)
    trajectory.layout = token_layout(trajectory.steps, 10, DECODE.max_cot_tokens, slice_steps=8)
    trajectory.old_logprobs = trajectory.sampling_logprobs()
    trajectory.advantage = 0.5
    with torch.no_grad():
        trajectory.ref_logprobs, _ = objective.token_logprobs(trajectory, DECODE, 8)
        plain = objective(trajectory, settings(LossAggMode.SEQ_MEAN_TOKEN_SUM, 8))
        with_kl = objective(trajectory, LossSettings(**{**settings(LossAggMode.SEQ_MEAN_TOKEN_SUM, 8).__dict__,
                                                        "kl_coef": 0.5}))
    assert float(with_kl.loss) == pytest.approx(float(plain.loss), abs=1e-6)
    assert dict(zip(STAT_NAMES, with_kl.stats.tolist(), strict=True))["ref_kl_sum"] == pytest.approx(0, abs=1e-6)


def test_checkpointed_slices_give_the_unsliced_loss_and_gradients(objective):
    trajectory = sampled_trajectory(objective.scorer, n_steps=3, env_steps=30, seed=7)
    trajectory.old_logprobs = trajectory.sampling_logprobs() - 0.05  # ratio exp(0.05): inside the clip range
    trajectory.advantage = 1.3
    results = []
    for slice_steps in (8, 1):  # one slice (no checkpoint) vs three checkpointed slices
        objective.zero_grad()
        trajectory.layout = token_layout(trajectory.steps, 30, DECODE.max_cot_tokens, slice_steps)
        out = objective(trajectory, settings(LossAggMode.SEQ_MEAN_TOKEN_MEAN, slice_steps))
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad.clone() for n, p in objective.named_parameters()
                                            if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-7)
    vision = [n for n in grads_a if "vision_tower" in n]
    assert vision and any(grads_a[n].abs().sum() > 0 for n in vision)  # the images are part of the graph
    embeddings = [n for n in grads_a if "embed_tokens" in n]  # tied to the LM head
    assert embeddings and all(grads_a[n].abs().sum() > 0 for n in embeddings)


def test_format_check_is_upstreams_regex_and_refuses_a_forced_close(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    ids, tokenizer = ckpt.token_ids, ckpt.tokenizer
    words = tokenizer("grasp the bowl", add_special_tokens=False)["input_ids"]
    assert well_formed(tokenizer, ids, [ids.think_start, *words, ids.think_end], truncated=False)
    assert well_formed(tokenizer, ids, [*words, ids.think_start, ids.think_end], truncated=False)  # search, not match
    assert not well_formed(tokenizer, ids, [*words, ids.think_end], truncated=False)  # no `<think>`
    assert not well_formed(tokenizer, ids, [ids.think_start, *words, ids.think_end], truncated=True)


def test_reward_and_group_filter():
    assert trajectory_reward(True, 0.5, 1.0, 0.4) == pytest.approx(1.2)
    assert trajectory_reward(False, 1.0, 1.0, 0.4) == pytest.approx(0.4)
    assert keep_group([True] + [False] * 9, 0.1, 0.9) and keep_group([True] * 9 + [False], 0.1, 0.9)  # inclusive
    assert not keep_group([False] * 8, 0.1, 0.9) and not keep_group([True] * 8, 0.1, 0.9)
