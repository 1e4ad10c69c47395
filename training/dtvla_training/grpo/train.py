"""`dtvla-train-grpo --config config/train/grpo.yaml --init CHECKPOINT [--resume [STEP_DIR]] [...]`: GRPO.

Outcome-driven RL of the whole think-then-act sequence against LIBERO (upstream `scripts/run_deepthinkvla_rl.sh`,
a veRL/Ray/FSDP fork), here on the same DeepSpeed engine as SFT. One iteration:
  1. rollouts: each rank runs its share of prompts x group_size episodes on its env workers (`grpo.rollout`), the
     policy sampling on the live weights; reward, group-normalised advantage, dynamic filtering with resampling;
  2. old log-probs: recomputed teacher-forced before the update (upstream), or the sampling ones (opt-in);
     the reference policy's too when kl_coef > 0;
  3. update: ppo_epochs passes over the rank's trajectories in mini-batches (one trajectory per micro-step,
     DeepSpeed accumulating mini_batch_size / ranks of them per optimizer step, gradients averaged over ranks,
     clipped at grad_clip); the learning rate follows a cosine over iterations.
Checkpoints are the SFT trainer's (`sft.checkpoint_io`): policy-loadable `step_<iteration>` directories with the
DeepSpeed state, each rank's RNGs and prompt position, written atomically. Launch as for SFT: plain `python` /
console script for one process, `torchrun` or `deepspeed` for several (gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
from tqdm import tqdm

from dtvla_policy.inference.engine import NonFiniteOutputError, PolicyEngine
from dtvla_policy.model.checkpoint import NORM_STATS_FILE, Checkpoint
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.protocol import Mode
from dtvla_sim_bridge.eval.config import suite_tasks
from dtvla_sim_bridge.eval.runner import WorkerPool
from dtvla_sim_bridge.eval.worker import WorkerSettings
from dtvla_training.grpo.config import GrpoConfig
from dtvla_training.grpo.loss import LossAggMode
from dtvla_training.grpo.objective import STAT_NAMES, GrpoObjective, LossSettings
from dtvla_training.grpo.rollout import (
    Prompt,
    PromptSampler,
    RolloutBatch,
    RolloutCollector,
    RolloutPolicy,
    RolloutShortfall,
)
from dtvla_training.grpo.trajectory import Trajectory, token_layout
from dtvla_training.sft import checkpoint_io
from dtvla_training.sft.config import ConfigError, field_names, load_config
from dtvla_training.sft.optim import lr_factor, make_optimizer
from dtvla_training.sft.train import (
    NonFiniteLossError,
    filled_deepspeed_json,
    init_distributed,
    launch_ranks,
    load_norm_stats,
    open_outputs,
    parse_overrides,
    resolve_bf16,
    run_cli,
    setup_process,
    trainer_parser,
)

log = logging.getLogger("dtvla_training.grpo")

# trainer_state.json entries a resume reads: the position and the geometry it is valid for.
RESUME_KEYS = ("step", "world_size", "prompts_per_iteration", "group_size", "mini_batch_size", "seed", "suite",
               "tasks", "init_states", "samplers")
# Rollout figures summed over ranks, then turned into the record's rates (`_record`).
ROLLOUT_SUMS = ("rollouts", "successes", "reward", "format", "replans", "cot_tokens", "cot_truncated", "env_steps",
                "kept_trajectories", "kept_successes", "rounds", "filtered_groups", "failed_groups",
                "dropped_rollouts", "surplus_groups")
TIMES = ("rollout_s", "policy_s", "learner_s")  # max over ranks


@dataclass
class TrainResult:
    """What a finished `train` call leaves behind."""

    iteration: int  # iterations completed (== config.max_iterations)
    checkpoint: Path  # the last checkpoint directory (policy-loadable)
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics records of this call (rank 0 only)


class GrpoTrainer:
    """One GRPO run on this rank: model, DeepSpeed engine, rollout pool, and the loop (`fit`)."""

    def __init__(self, config: GrpoConfig, resume: str | Path | None = None) -> None:
        """`resume`: None (fresh run), "latest", or a `step_*` directory. Everything that can be refused cheaply
        (config, output directory, DeepSpeed JSON, checkpoint files, resume state) is, before the process group and
        the model exist (`ConfigError` / `FileNotFoundError`)."""
        self.config = config
        self.rank, self.world_size = launch_ranks()
        self.iteration = 0
        resume_dir = self._preflight(resume)
        self.device = init_distributed()
        if dist.get_world_size() != self.world_size:
            raise RuntimeError(f"process group has {dist.get_world_size()} ranks, WORLD_SIZE says {self.world_size}")
        self.objective = GrpoObjective(checkpoint_io.load_init_weights(config.init_checkpoint, self.init_files))
        self.optimizer = make_optimizer(self.objective, config, config.no_decay_norms_and_biases)
        self.engine, _, _, _ = deepspeed.initialize(model=self.objective, optimizer=self.optimizer,
                                                    config=self.ds_config)
        self.base_lrs = [group["lr"] for group in self.engine.optimizer.param_groups]
        self.scorer = PolicyEngine(self._checkpoint(self.model), config.decode)
        self.objective.scorer = self.scorer
        self.reference = self._reference() if config.kl_coef > 0 else None
        self._check_prompts()
        self.sampler = PromptSampler(self.prompts, config.seed, self.rank, self.world_size)
        if resume_dir is not None:
            self._resume(resume_dir)
        self.policy = RolloutPolicy(self.scorer, config.decode, config.seed, self.rank)
        settings = WorkerSettings(suite=config.suite, max_steps=config.max_steps, protocol=config.protocol,
                                  video_dir=str(config.output_dir / "videos"),
                                  render_threads=max(1, (os.cpu_count() or 1) // config.env_workers))
        self.pool = WorkerPool(settings, config.env_workers, self.policy, max_attempts=1, name="dtvla-train-grpo")
        self.collector = RolloutCollector(self.pool, self.policy, self.sampler, config,
                                          config.prompts_per_iteration // self.world_size)

    # ------------------------------------------------------------------------------------------ setup
    def _preflight(self, resume: str | Path | None) -> Path | None:
        config = self.config
        config.check_inputs()
        config.check_world(self.world_size)
        self.prompts = [Prompt(task, init) for task in config.task_ids for init in config.init_state_ids]
        if len(self.prompts) < self.world_size:
            raise ConfigError(f"{len(self.prompts)} prompts cannot be shared by {self.world_size} processes")
        if resume is None and checkpoint_io.existing_checkpoints(config.output_dir):
            raise ConfigError(f"{config.output_dir} already holds checkpoints; pass --resume to continue that run "
                              "or choose another output_dir")
        resume_dir = (checkpoint_io.resolve_resume_dir(config.output_dir, resume, RESUME_KEYS)
                      if resume is not None else None)
        self.bf16 = resolve_bf16(config.bf16, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.ds_config = filled_deepspeed_json(config.deepspeed, 1, config.mini_batch_size // self.world_size,
                                               self.world_size, config.grad_clip, self.bf16)
        self.init_files = checkpoint_io.load_init_files(config.init_checkpoint)
        norm_stats = config.init_checkpoint / NORM_STATS_FILE
        if not norm_stats.is_file():
            raise FileNotFoundError(f"{config.init_checkpoint} has no {NORM_STATS_FILE}: GRPO starts from a policy "
                                    "checkpoint (an SFT output), whose norm stats the rollouts unnormalise with")
        self.norm_stats_path = norm_stats
        self.normalizer = load_norm_stats(norm_stats)
        if resume_dir is not None:
            self._check_resume_geometry(checkpoint_io.read_trainer_state(resume_dir, RESUME_KEYS), resume_dir)
        return resume_dir

    @property
    def model(self) -> DeepThinkVLA:
        return self.engine.module.vla

    def _checkpoint(self, model: DeepThinkVLA) -> Checkpoint:
        files = self.init_files
        return Checkpoint(path=self.config.init_checkpoint, model=model, tokenizer=files.tokenizer,
                          normalizer=self.normalizer, token_ids=files.token_ids)

    def _reference(self) -> GrpoObjective:
        """The frozen init policy the KL term pulls towards (only built when kl_coef > 0)."""
        model = checkpoint_io.load_init_weights(self.config.init_checkpoint, self.init_files)
        model.to(device=self.device, dtype=self.model.dtype).eval().requires_grad_(False)
        reference = GrpoObjective(model)
        reference.scorer = PolicyEngine(self._checkpoint(model), self.config.decode)
        return reference

    def _check_prompts(self) -> None:
        """Refuse, before any worker starts, a task whose prompt leaves no room for the CoT cap."""
        for info in suite_tasks(self.config.suite):
            if info.task_id in self.config.task_ids:
                try:
                    prefix = self.scorer.prefix(info.language)
                    self.scorer.check_positions(len(prefix), Mode.SAMPLE, self.config.decode)
                except ValueError as err:
                    raise ConfigError(f"{self.config.suite} task {info.task_id}: {err}") from None

    def _geometry(self) -> dict[str, Any]:
        c = self.config
        return {"world_size": self.world_size, "prompts_per_iteration": c.prompts_per_iteration,
                "group_size": c.group_size, "mini_batch_size": c.mini_batch_size, "seed": c.seed, "suite": c.suite,
                "tasks": list(c.task_ids), "init_states": list(c.init_state_ids)}

    def _check_resume_geometry(self, state: dict[str, Any], step_dir: Path) -> None:
        changed = {k: (state[k], v) for k, v in self._geometry().items() if state[k] != v}
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ConfigError(f"cannot resume {step_dir} exactly: {detail}; the prompt stream would not match")

    def _resume(self, step_dir: Path) -> None:
        state = checkpoint_io.load_train_state(self.engine, step_dir, RESUME_KEYS)
        self._check_resume_geometry(state, step_dir)
        self.iteration = int(state["step"])
        self.sampler.load_state(state["samplers"][self.rank])
        if self.rank == 0:
            log.info("resumed from %s at iteration %d", step_dir, self.iteration)

    # ------------------------------------------------------------------------------------------ loop
    def fit(self, crash_after_iteration: int | None = None) -> TrainResult:
        """Run iterations up to `config.max_iterations`, logging each and checkpointing every `save_every`.

        `crash_after_iteration`: SIGKILL this process once that iteration's metrics and checkpoint (if due) are
        written, as a crash would (the resume test's exact crash point).
        """
        config = self.config
        sink = open_outputs(config, self.iteration) if self.rank == 0 else None
        records: list[dict[str, Any]] = []
        checkpoint = None
        progress = tqdm(total=config.max_iterations, initial=self.iteration, unit="it", dynamic_ncols=True,
                        disable=self.rank != 0, mininterval=1.0)
        try:
            while self.iteration < config.max_iterations:
                record = self._iteration()
                self.iteration += 1
                progress.update(1)
                if sink is not None:
                    sink.write(record)
                    records.append(record)
                    progress.set_postfix(success=f"{record['success_rate']:.2f}", reward=f"{record['reward']:.3f}",
                                         fmt=f"{record['format_rate']:.2f}", clip=f"{record['clip_fraction']:.3f}")
                last = self.iteration == config.max_iterations
                if self.iteration % config.save_every == 0 or last:
                    checkpoint = self._save(record)
                if self.iteration == crash_after_iteration:
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            self.pool.close()
            progress.close()
            if sink is not None:
                sink.close()
        if checkpoint is None:  # resumed at max_iterations: nothing left to do
            checkpoint = config.output_dir / checkpoint_io.CHECKPOINTS_DIR / checkpoint_io.step_dir_name(self.iteration)
        return TrainResult(iteration=self.iteration, checkpoint=checkpoint, records=records)

    def _set_lr(self) -> float:
        """The cosine schedule over iterations (upstream steps its scheduler once per iteration)."""
        config = self.config
        factor = lr_factor(self.iteration, config.warmup_iterations, config.max_iterations, config.min_lr_ratio)
        for group, base in zip(self.engine.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.engine.optimizer.param_groups[0]["lr"]  # read back: what the optimizer steps with

    def _iteration(self) -> dict[str, Any]:
        number = self.iteration + 1  # iterations are counted from 1 in messages, records and checkpoints
        lr = self._set_lr()
        start = time.perf_counter()
        try:
            batch = self.collector.collect(self.iteration)
        except NonFiniteOutputError as err:
            raise NonFiniteLossError(
                f"the policy produced non-finite outputs in the rollouts of iteration {number} ({err}); the weights "
                f"are no longer usable. Resume from the last checkpoint under {self._checkpoints_dir()} with a lower "
                "learning rate"
            ) from None
        rollout_s = time.perf_counter() - start
        start = time.perf_counter()
        stats, old_entropy = self._update(batch.trajectories, number)
        learner_s = time.perf_counter() - start
        return self._record(number, lr, batch, stats, old_entropy,
                            {"rollout_s": rollout_s, "policy_s": batch.policy_seconds, "learner_s": learner_s})

    def _checkpoints_dir(self) -> Path:
        return self.config.output_dir / checkpoint_io.CHECKPOINTS_DIR

    def _update(self, trajectories: list[Trajectory], number: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Old (and reference) log-probs, then ppo_epochs passes of clipped updates; returns the summed stats
        of all micro-steps and the entropy sums of the pre-update policy (both over every rank)."""
        config = self.config
        for trajectory in trajectories:
            trajectory.layout = token_layout(trajectory.steps, trajectory.env_steps, config.max_cot_tokens,
                                             config.slice_steps, config.execute_steps)
        old_entropy = self._old_logprobs(trajectories)
        self.engine.train()
        self.grad_norms: list[float] = []
        stats = torch.zeros(len(STAT_NAMES), dtype=torch.float64)
        per_rank = config.mini_batch_size // self.world_size
        for epoch in range(config.ppo_epochs):
            for first in range(0, len(trajectories), per_rank):
                mini_batch = trajectories[first : first + per_rank]
                settings = self._loss_settings(mini_batch, entropy=epoch == 0 and config.old_logprobs == "sampling")
                for k, trajectory in enumerate(mini_batch):
                    out = self.engine(trajectory, settings)
                    where = (f"iteration {number} (epoch {epoch + 1}, mini-batch {first // per_rank + 1}, "
                             f"trajectory {k + 1} of {len(mini_batch)})")
                    self._check_loss(out.loss, where)
                    self.engine.backward(out.loss)
                    self.engine.step()
                    stats += out.stats
                self._check_grad_norm(number)
        dist.all_reduce(stats)
        return stats, old_entropy

    def _old_logprobs(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """Set every trajectory's ratio denominator (and reference log-probs); returns (cot, action) entropy sums
        over the valid tokens of the pre-update policy, all ranks (zeros when the sampling log-probs are used:
        the first epoch's forward measures the entropy then)."""
        config = self.config
        entropy = torch.zeros(2, dtype=torch.float64)
        recompute = config.old_logprobs == "recompute"
        self.engine.eval()
        with torch.no_grad():
            for trajectory in trajectories:
                layout = trajectory.layout
                if recompute:
                    logp, ent = self.objective.token_logprobs(trajectory, config.decode, config.slice_steps, True)
                    trajectory.old_logprobs = logp.float().cpu()
                    valid = layout.mask.to(ent.device)
                    action = layout.is_action.to(ent.device)
                    entropy[0] += float(ent[valid & ~action].double().sum())
                    entropy[1] += float(ent[valid & action].double().sum())
                else:
                    trajectory.old_logprobs = trajectory.sampling_logprobs()
                if self.reference is not None:
                    ref, _ = self.reference.token_logprobs(trajectory, config.decode, config.slice_steps)
                    trajectory.ref_logprobs = ref.float().cpu()
        dist.all_reduce(entropy)
        return entropy

    def _loss_settings(self, mini_batch: list[Trajectory], entropy: bool) -> LossSettings:
        config = self.config
        scale = None
        if config.agg_mode is LossAggMode.TOKEN_MEAN:
            tokens = torch.tensor([float(sum(int(t.layout.mask.sum()) for t in mini_batch))], dtype=torch.float64)
            dist.all_reduce(tokens)
            scale = config.mini_batch_size / max(float(tokens), 1.0)
        return LossSettings(decode=config.decode, mode=config.agg_mode, slice_steps=config.slice_steps,
                            clip_low=config.clip_low, clip_high=config.clip_high, clip_c=config.clip_c,
                            kl_coef=config.kl_coef, token_mean_scale=scale, entropy=entropy)

    def _check_loss(self, loss: torch.Tensor, where: str) -> None:
        """Stop every rank before a non-finite loss is applied (one all-reduce: all ranks stop together)."""
        value = loss.detach().double().reshape(1).cpu()
        dist.all_reduce(value)
        if not math.isfinite(float(value)):
            raise NonFiniteLossError(
                f"loss is {float(value)} at {where}; stopped before applying it. Lower the learning rate; the last "
                f"checkpoint under {self._checkpoints_dir()} is intact"
            )

    def _check_grad_norm(self, number: int) -> None:
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            self.grad_norms.append(float(grad_norm))
        if grad_norm is not None and not math.isfinite(float(grad_norm)):
            raise NonFiniteLossError(
                f"gradient norm is {float(grad_norm)} at iteration {number}; the weights are no longer usable. Resume "
                f"from the last checkpoint under {self._checkpoints_dir()} with a lower learning rate"
            )

    # ------------------------------------------------------------------------------------------ metrics
    def _record(self, number: int, lr: float, batch: RolloutBatch, stats: torch.Tensor, old_entropy: torch.Tensor,
                times: dict[str, float]) -> dict[str, Any]:
        seen, kept = batch.seen, batch.trajectories
        sums = torch.tensor([
            len(seen), sum(t.success for t in seen), sum(t.reward for t in seen), sum(t.format_rate for t in seen),
            sum(t.replans for t in seen), sum(t.cot_tokens for t in seen), sum(t.cot_truncated for t in seen),
            sum(t.env_steps for t in seen), len(kept), sum(t.success for t in kept), batch.rounds,
            batch.filtered_groups, batch.failed_groups, batch.dropped_rollouts, batch.surplus_groups,
        ], dtype=torch.float64)
        slowest = torch.tensor([times[name] for name in TIMES], dtype=torch.float64)
        dist.all_reduce(sums)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        r = dict(zip(ROLLOUT_SUMS, sums.tolist(), strict=True))
        s = dict(zip(STAT_NAMES, stats.tolist(), strict=True))
        t = dict(zip(TIMES, slowest.tolist(), strict=True))

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        if self.config.old_logprobs == "recompute":
            cot_entropy, action_entropy = old_entropy.tolist()
            cot_count, action_count = s["valid_cot_tokens"], s["valid_action_tokens"]
            cot_count, action_count = cot_count / self.config.ppo_epochs, action_count / self.config.ppo_epochs
        else:  # measured in the first epoch's forward passes
            cot_entropy, action_entropy = s["cot_entropy_sum"], s["action_entropy_sum"]
            cot_count = s["valid_cot_tokens"] / self.config.ppo_epochs
            action_count = s["valid_action_tokens"] / self.config.ppo_epochs
        record: dict[str, Any] = {
            "step": number,  # the iteration (metrics.jsonl and TensorBoard key records by "step")
            "success_rate": ratio(r["successes"], r["rollouts"]),  # every finished rollout, filtered groups too
            "reward": ratio(r["reward"], r["rollouts"]),
            "format_rate": ratio(r["format"], r["rollouts"]),
            "batch_success_rate": ratio(r["kept_successes"], r["kept_trajectories"]),  # the trajectories trained on
            "cot_tokens": ratio(r["cot_tokens"], r["replans"]),  # thought tokens per replanning step
            "cot_truncated_rate": ratio(r["cot_truncated"], r["replans"]),
            "loss": ratio(s["loss"], s["trajectories"]),
            "clip_fraction": ratio(s["clipped"], s["valid_tokens"]),
            "dual_clip_fraction": ratio(s["dual_clipped"], s["valid_tokens"]),
            "ppo_kl": ratio(s["ppo_kl_sum"], s["valid_tokens"]),  # old -> current policy, over the update
            "entropy_cot": ratio(cot_entropy, cot_count),  # per valid token, pre-update policy
            "entropy_action": ratio(action_entropy, action_count),
            "grad_norm": ratio(sum(self.grad_norms), len(self.grad_norms)),  # mean over the optimizer steps
            "lr": lr,
            "trajectories": r["kept_trajectories"],
            "rollouts": r["rollouts"],
            "env_steps": r["env_steps"],
            "env_steps_per_s": ratio(r["env_steps"], t["rollout_s"]),
            **t,
            "rollout_share": ratio(t["rollout_s"], t["rollout_s"] + t["learner_s"]),
            "rounds": r["rounds"],
            "filtered_groups": r["filtered_groups"],
            "failed_groups": r["failed_groups"],
            "dropped_rollouts": r["dropped_rollouts"],
            "surplus_groups": r["surplus_groups"],
        }
        if self.config.kl_coef > 0:
            record["ref_kl"] = ratio(s["ref_kl_sum"], s["valid_tokens"])
        return record

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save(self, last_record: dict[str, Any]) -> Path:
        samplers: list[Any] = [None] * self.world_size
        dist.all_gather_object(samplers, self.sampler.state())
        state = {"step": self.iteration, **self._geometry(), "samplers": samplers, "metrics": last_record}
        path = checkpoint_io.save_checkpoint(
            self.engine, self.model, self.init_files.tokenizer, self.norm_stats_path, self.config.output_dir,
            self.iteration, state, self.config.to_dict(), self.config.keep_train_states,
        )
        if self.rank == 0:
            tqdm.write(f"saved {path}", file=sys.stderr)
        return path


def train(config: GrpoConfig, resume: str | Path | None = None,
          crash_after_iteration: int | None = None) -> TrainResult:
    """Run GRPO to `config.max_iterations` (see `GrpoTrainer`); the process group stays up for the caller."""
    return GrpoTrainer(config, resume=resume).fit(crash_after_iteration)


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    parser = trainer_parser("dtvla-train-grpo", __doc__.splitlines()[0], "config/train/grpo.yaml", "iteration")
    parser.add_argument("--init", dest="init", type=Path, default=None, metavar="CHECKPOINT",
                        help="the policy checkpoint to start from (the config's init_checkpoint)")
    args, overrides = parse_overrides(parser, argv, field_names(GrpoConfig))
    if args.init is not None:
        overrides["init_checkpoint"] = str(args.init)
    return args, overrides


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    setup_process(args)
    # Truncated CoTs are counted in the metrics (cot_truncated_rate); the engine's warning per sample would flood.
    logging.getLogger("dtvla_policy.inference.engine").setLevel(logging.ERROR)

    def run() -> str:
        config = load_config(args.config, overrides, GrpoConfig)
        result = train(config, resume=args.resume, crash_after_iteration=args.crash_after)
        return f"finished iteration {result.iteration}; last checkpoint {result.checkpoint}"

    run_cli("dtvla-train-grpo", run, (NonFiniteLossError, RolloutShortfall))


if __name__ == "__main__":
    main()
