"""GRPO rollouts on the real worker pool and LIBERO (libero_spatial task 0, 12-step episodes, 128 px cameras) with
the tiny model: per-step records, rewards and advantages, and a dead env worker's group dropped, counted and
replaced by the next prompt's."""

from pathlib import Path

import numpy as np
import pytest

from dtvla_policy.inference.engine import PolicyEngine
from dtvla_sim_bridge.eval.runner import WorkerPool
from dtvla_sim_bridge.eval.worker import WorkerSettings
from dtvla_training.grpo.config import GrpoConfig
from dtvla_training.grpo.rollout import Prompt, PromptSampler, RolloutCollector, RolloutPolicy

pytestmark = pytest.mark.sim

MAX_STEPS = 12


def collector(checkpoint: Path, tmp_path: Path, policy_hook=None, **overrides) -> RolloutCollector:
    values = dict(suite="libero_spatial", tasks="0", init_states="0-3", prompts_per_iteration=1, group_size=2,
                  max_steps=MAX_STEPS, camera_size=128, max_cot_tokens=4, env_workers=2, filter_groups=False,
                  mini_batch_size=2)
    config = GrpoConfig(init_checkpoint=checkpoint, output_dir=tmp_path, **{**values, **overrides})
    engine = PolicyEngine.from_checkpoint(checkpoint)
    policy = RolloutPolicy(engine, config.decode, config.seed, rank=0)
    source = policy if policy_hook is None else policy_hook(policy)
    settings = WorkerSettings(suite=config.suite, max_steps=config.max_steps, protocol=config.protocol,
                              video_dir=str(tmp_path / "videos"), render_threads=1)
    pool = WorkerPool(settings, config.env_workers, source, max_attempts=1)
    prompts = [Prompt(0, init) for init in config.init_state_ids]
    sampler = PromptSampler(prompts, config.seed, rank=0, world_size=1)
    return RolloutCollector(pool, policy, sampler, config, groups_per_rank=1)


def test_rollouts_keep_every_step_and_a_dead_worker_costs_its_group(tag_prone_checkpoint, tmp_path):
    calls = []

    def killing(policy):
        def source(queries):
            calls.append(len(queries))
            if len(calls) == 1:  # the first chunk request: one worker dies, as a segfault would
                next(iter(run.pool.workers.values())).process.kill()
            return policy(queries)
        return source

    run = collector(tag_prone_checkpoint, tmp_path, killing)
    expected_prompts = PromptSampler(run.sampler.prompts, run.config.seed, 0, 1).take(2)
    try:
        batch = run.collect(iteration=0)
        assert (batch.rounds, batch.failed_groups, batch.dropped_rollouts) == (2, 1, 1)
        [group] = batch.groups
        assert [(t.task, t.init_state) for t in group] == [(p.task, p.init_state) for p in expected_prompts[1:]] * 2
        for trajectory in group:
            assert trajectory.env_steps == MAX_STEPS and not trajectory.success
            assert [s.start for s in trajectory.steps] == [0, 10]  # two chunks for 12 steps
            for step in trajectory.steps:
                assert step.agentview.shape == (128, 128, 3) and step.action_tokens.shape == (70,)
                assert step.cot_logprobs.shape == (len(step.cot_segment) + 1,)
                assert np.all(step.action_logprobs <= 0)
            assert trajectory.reward == pytest.approx(0.4 * trajectory.format_rate)
        rewards = [t.reward for t in group]
        if rewards[0] != rewards[1]:  # a group of two: advantages +-1/sqrt(2)
            assert sorted(t.advantage for t in group) == pytest.approx([-0.70710, 0.70710], abs=1e-4)
        assert not run.policy.steps  # nothing left of the dead rollout
        assert len(batch.seen) == 2

        again = run.collect(iteration=1)  # on the workers the first call kept
        assert (again.rounds, again.failed_groups, len(again.groups)) == (1, 0, 1)
    finally:
        run.pool.close()


def test_the_same_iteration_samples_the_same_tokens_whatever_the_batches(tiny_checkpoint, tmp_path):
    """Per-step seeds: one env worker (every batch of one) and two (batches of two) roll out the same tokens."""
    runs = []
    for workers in (1, 2):
        run = collector(tiny_checkpoint, tmp_path / str(workers), env_workers=workers)
        try:
            runs.append(run.collect(iteration=3).groups[0])
        finally:
            run.pool.close()
    for one, two in zip(*runs, strict=True):
        assert [s.cot_segment for s in one.steps] == [s.cot_segment for s in two.steps]
        assert all(np.array_equal(a.action_tokens, b.action_tokens) for a, b in zip(one.steps, two.steps,
                                                                                     strict=True))
