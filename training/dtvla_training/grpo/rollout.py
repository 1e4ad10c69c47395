"""GRPO rollouts on the evaluation's worker pool: env workers step LIBERO, the learner process samples chunks.

Each rank owns a `WorkerPool` (`dtvla_sim_bridge.eval.runner`: spawned workers, one `LiberoSim` each, the one
lockstep episode loop) whose chunk source is `RolloutPolicy`: the observations of every waiting worker go through
one `PolicyEngine.predict_batch` in `sample` mode on the live training weights, and each step's CoT ids, action ids
and sampling log-probs are kept here, in the learner process, keyed by the asking job. Every row draws from its
own generator seeded by (run seed, rank, iteration, rollout, env step), so a rollout samples the same tokens
whichever workers shared its batches: a resumed run repeats the iteration it lost.

`RolloutCollector.collect` runs rounds until the rank has its share of groups (upstream `ray_trainer.fit`): each
round draws a batch of prompts from the rank's `PromptSampler`, runs `group_size` rollouts of each, scores them,
drops every group that lost a rollout (a dead worker or a failed simulator: counted) and, with dynamic filtering,
every group whose success rate is outside [filter_low, filter_high]; groups beyond the share are discarded, as
upstream truncates its buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dtvla_policy.inference.engine import Observation, PolicyEngine
from dtvla_policy.protocol import DecodeConfig, Mode
from dtvla_sim_bridge.eval.runner import WorkerPool
from dtvla_sim_bridge.eval.worker import Job, PolicyQuery, PolicyReply
from dtvla_training.grpo.config import GrpoConfig
from dtvla_training.grpo.loss import group_advantages
from dtvla_training.grpo.reward import keep_group, trajectory_reward, well_formed
from dtvla_training.grpo.trajectory import RolloutSummary, StepRecord, Trajectory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """One GRPO prompt: a LIBERO task of the suite and one of its fixed init states."""

    task: int
    init_state: int


class PromptSampler:
    """An endless, resumable stream of this rank's prompts.

    Epoch e is a permutation of all prompts drawn from (seed, e); rank r takes its entries r, r + W, r + 2W, ...
    Each rank keeps its own position (dynamic filtering makes ranks consume at different paces); `state` and
    `load_state` carry it through a checkpoint.
    """

    def __init__(self, prompts: list[Prompt], seed: int, rank: int, world_size: int) -> None:
        if len(prompts) < world_size:
            raise ValueError(f"{len(prompts)} prompts cannot be shared by {world_size} processes")
        self.prompts = prompts
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0

    def _epoch_order(self) -> list[Prompt]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.prompts))
        return [self.prompts[i] for i in order[self.rank :: self.world_size]]

    def take(self, n: int) -> list[Prompt]:
        taken: list[Prompt] = []
        while len(taken) < n:
            order = self._epoch_order()
            chunk = order[self.position : self.position + n - len(taken)]
            taken += chunk
            self.position += len(chunk)
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
        return taken

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def step_seed(seed: int, rank: int, iteration: int, rollout: int, env_step: int) -> int:
    """The sampling seed of one replanning step: a function of where it is, not of the batch it ran in."""
    return int(np.random.SeedSequence([seed, rank, iteration, rollout, env_step]).generate_state(1)[0])


class RolloutPolicy:
    """The learner-side chunk source of the rollout pool: batched sample-mode calls, steps kept per rollout."""

    def __init__(self, engine: PolicyEngine, decode: DecodeConfig, seed: int, rank: int) -> None:
        self.engine = engine
        self.decode = decode
        self.seed = seed
        self.rank = rank
        self.iteration = 0
        self.steps: dict[int, list[StepRecord]] = {}  # rollout number -> its steps so far
        self.seconds = 0.0  # time spent sampling (the learner's share of the rollout time)
        self.calls = 0

    def begin(self, iteration: int) -> None:
        self.iteration = iteration
        self.steps.clear()
        self.seconds, self.calls = 0.0, 0

    def __call__(self, queries: list[PolicyQuery]) -> list[PolicyReply]:
        start = time.perf_counter()
        seeds = [step_seed(self.seed, self.rank, self.iteration, q.job.rollout, q.step) for q in queries]
        observations = [Observation(q.agentview, q.wrist, q.instruction) for q in queries]
        model = self.engine.model
        training = model.training
        model.eval()
        try:
            predictions = self.engine.predict_batch(observations, Mode.SAMPLE, self.decode, seeds=seeds)
        finally:
            model.train(training)
        tokenizer, ids = self.engine.ckpt.tokenizer, self.engine.ids
        replies = []
        for query, p in zip(queries, predictions, strict=True):
            self.steps.setdefault(query.job.rollout, []).append(StepRecord(
                agentview=query.agentview, wrist=query.wrist, start=query.step, cot_segment=list(p.cot_segment_ids),
                action_tokens=np.asarray(p.action_tokens, dtype=np.int64), cot_logprobs=p.cot_logprobs,
                action_logprobs=p.action_logprobs, cot_tokens=p.cot_tokens, cot_truncated=p.cot_truncated,
                well_formed=well_formed(tokenizer, ids, p.cot_segment_ids, p.cot_truncated),
            ))
            replies.append(PolicyReply(p.actions, p.cot, p.timings["total_ms"], p.cot_tokens, p.cot_truncated,
                                       len(queries)))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return replies


@dataclass
class RolloutBatch:
    """One iteration's rollouts on this rank: the kept groups (advantages set) and what the rounds saw."""

    groups: list[list[Trajectory]]
    rounds: int = 0
    seen: list[RolloutSummary] = field(default_factory=list)  # every finished rollout of the kept or filtered groups
    filtered_groups: int = 0  # dropped by dynamic filtering
    failed_groups: int = 0  # dropped because one of their rollouts died or its simulator failed
    dropped_rollouts: int = 0  # those rollouts
    surplus_groups: int = 0  # kept groups beyond the share (discarded, as upstream truncates)
    seconds: float = 0.0
    policy_seconds: float = 0.0

    @property
    def trajectories(self) -> list[Trajectory]:
        return [t for group in self.groups for t in group]


class RolloutCollector:
    """Collects one iteration's groups on this rank (see the module docstring)."""

    def __init__(self, pool: WorkerPool, policy: RolloutPolicy, sampler: PromptSampler, config: GrpoConfig,
                 groups_per_rank: int) -> None:
        self.pool = pool
        self.policy = policy
        self.sampler = sampler
        self.config = config
        self.groups_per_rank = groups_per_rank

    def collect(self, iteration: int) -> RolloutBatch:
        config = self.config
        start = time.perf_counter()
        self.policy.begin(iteration)
        batch = RolloutBatch(groups=[])
        next_rollout = 0
        while len(batch.groups) < self.groups_per_rank:
            if config.max_rollout_rounds and batch.rounds >= config.max_rollout_rounds:
                raise RolloutShortfall(
                    f"iteration {iteration + 1}: {len(batch.groups)} of {self.groups_per_rank} groups after "
                    f"{batch.rounds} rounds ({batch.filtered_groups} filtered, {batch.failed_groups} failed); "
                    "dynamic filtering keeps groups whose success rate is in "
                    f"[{config.filter_low}, {config.filter_high}]: set filter_groups false or raise max_rollout_rounds"
                )
            batch.rounds += 1
            prompts = self.sampler.take(self.groups_per_rank)
            jobs = [Job(p.task, p.init_state, attempt=1, rollout=next_rollout + g * config.group_size + m)
                    for g, p in enumerate(prompts) for m in range(config.group_size)]
            next_rollout += len(jobs)
            records: dict[int, dict[str, Any]] = {}
            self.pool.run(jobs, _keep_by_rollout(records), keep_workers=True)
            kept_before = len(batch.groups)
            for g, prompt in enumerate(prompts):
                group_jobs = jobs[g * config.group_size : (g + 1) * config.group_size]
                group = self._group(prompt, group_jobs, records, batch)
                if group is None:
                    continue
                batch.seen += [t.summary() for t in group]
                if config.filter_groups and not keep_group([t.success for t in group], config.filter_low,
                                                           config.filter_high):
                    batch.filtered_groups += 1
                    continue
                if len(batch.groups) < self.groups_per_rank:
                    batch.groups.append(group)
                else:
                    batch.surplus_groups += 1
            log.info("iteration %d round %d: kept %d of %d groups", iteration + 1, batch.rounds,
                     len(batch.groups) - kept_before, len(prompts))
        batch.seconds = time.perf_counter() - start
        batch.policy_seconds = self.policy.seconds
        return batch

    def _group(self, prompt: Prompt, jobs: list[Job], records: dict[int, dict[str, Any]],
               batch: RolloutBatch) -> list[Trajectory] | None:
        """The group's trajectories with rewards and advantages, or None (counted) if a rollout of it failed."""
        config = self.config
        failed = [job for job in jobs if records.get(job.rollout, {}).get("status") != "ok"]
        if failed:
            batch.failed_groups += 1
            batch.dropped_rollouts += len(failed)
            for job in jobs:
                self.policy.steps.pop(job.rollout, None)
            for job in failed:
                error = records.get(job.rollout, {}).get("error", "no record")
                log.warning("rollout of task %d init state %d failed, its group is dropped: %s", job.task,
                            job.init_state, error.splitlines()[0] if error else "")
            return None
        group = []
        for job in jobs:
            record = records[job.rollout]
            steps = self.policy.steps.pop(job.rollout, [])
            trajectory = Trajectory(task=prompt.task, init_state=prompt.init_state, rollout=job.rollout,
                                    instruction=record.get("task_language", ""), steps=steps,
                                    success=bool(record["success"]), env_steps=int(record["steps"]))
            trajectory.reward = trajectory_reward(trajectory.success, trajectory.format_rate, config.success_reward,
                                                  config.format_reward)
            group.append(trajectory)
        advantages = group_advantages(torch.tensor([[t.reward for t in group]], dtype=torch.float64))[0]
        for trajectory, advantage in zip(group, advantages.tolist(), strict=True):
            trajectory.advantage = advantage
        return group


class RolloutShortfall(RuntimeError):
    """Dynamic filtering kept too few groups within `max_rollout_rounds`."""


def _keep_by_rollout(records: dict[int, dict[str, Any]]) -> Callable[[dict[str, Any], Job], None]:
    """The pool's record callback: each rollout's record under its number."""

    def keep(record: dict[str, Any], job: Job) -> None:
        records[job.rollout] = record

    return keep
