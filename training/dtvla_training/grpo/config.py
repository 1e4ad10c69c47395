"""GRPO configuration: one frozen dataclass, loaded like the SFT config (YAML + one flag per key, "did you mean").

Every default is upstream's RL recipe (OpenBMB/DeepThinkVLA `scripts/run_deepthinkvla_rl.sh` over the veRL fork's
`ppo_trainer.yaml`; digest in ../shared/reference/upstream.md section 5), so `config/train/grpo.yaml` only names the
checkpoint and the output. Deliberate differences are opt-in fields, each saying what upstream does; the ones that
cannot be opted out of (they follow from running on the episode loop) are listed in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dtvla_policy.protocol import COT_CAP_RL, UPSTREAM_DECODE, UPSTREAM_EPISODE, DecodeConfig, EpisodeProtocol
from dtvla_sim_bridge.sim.suites import INIT_STATES, get_suite, parse_index_ranges
from dtvla_training.grpo.loss import LossAggMode
from dtvla_training.sft.config import ConfigError, check_run_files, plain_values

RL_MAX_STEPS = 480  # upstream RobHFRollout.max_steps: the same cap for every suite (not the eval caps)
OLD_LOGPROB_SOURCES = ("recompute", "sampling")
AGG_MODES = tuple(mode.value for mode in LossAggMode)


@dataclass(frozen=True)
class GrpoConfig:
    """One GRPO run. Batch sizes are global (all ranks); the schedule counts iterations (one rollout + update)."""

    init_checkpoint: Path  # the SFT policy to improve (a policy-loadable checkpoint: weights, tokenizer, norm stats)
    output_dir: Path  # checkpoints/, metrics.jsonl, tensorboard/, config.yaml

    # prompts: (task, init state) pairs of one suite (upstream: 10 tasks x 50 trials of libero_10)
    suite: str = "libero_10"
    tasks: str = "all"  # task ids of the suite: "all", "3", "0-4", "0,2,5-7"
    init_states: str = f"0-{INIT_STATES - 1}"  # LIBERO init states per task (upstream num_trials_per_task 50)
    prompts_per_iteration: int = 64  # groups per iteration over all ranks (upstream train_batch_size)
    group_size: int = 8  # rollouts per prompt (upstream n_samples)

    # rollouts: the episode loop's protocol and sample-mode decoding
    max_steps: int = RL_MAX_STEPS  # env steps per episode, settle steps excluded (upstream: 480 for every suite)
    settle_steps: int = UPSTREAM_EPISODE.settle_steps  # no-op steps after each reset (upstream num_steps_wait 10)
    execute_steps: int = UPSTREAM_EPISODE.execute_steps  # actions run per chunk: all 10 (upstream)
    camera_size: int = UPSTREAM_EPISODE.camera_size  # env render size; the policy resizes to its own (256, upstream)
    max_cot_tokens: int = COT_CAP_RL  # CoT cap (upstream max_response_length 300)
    cot_temperature: float = UPSTREAM_DECODE.cot_temperature  # 1.0, top-p 1, no top-k (upstream)
    action_temperature: float = UPSTREAM_DECODE.action_temperature  # 1.6 over the 2048 action ids (upstream)
    env_workers: int = 8  # env processes per rank, one env each (upstream: one process per trajectory)

    # reward and groups
    success_reward: float = 1.0  # x LIBERO's done flag (upstream verifier.acc_coef in the script)
    format_reward: float = 0.4  # x fraction of well-formed CoTs (upstream verifier.format_coef in the script)
    filter_groups: bool = True  # dynamic filtering: keep groups whose success rate is in the bounds, resample
    filter_low: float = 0.1  # upstream accuracy_lower_bound (inclusive)
    filter_high: float = 0.9  # upstream accuracy_upper_bound (inclusive)
    max_rollout_rounds: int = 0  # rounds of prompts per iteration before giving up; 0: no limit (upstream)

    # update
    ppo_epochs: int = 2  # passes over an iteration's trajectories (upstream)
    mini_batch_size: int = 128  # trajectories per optimizer step over all ranks (upstream ppo_mini_batch_size)
    slice_steps: int = 8  # replanning steps per forward/backward slice (upstream traj_mini_batch_size)
    clip_low: float = 0.2  # ratio clipped below at 1 - clip_low (upstream clip_ratio_low)
    clip_high: float = 0.28  # ... and above at 1 + clip_high (upstream clip_ratio_high)
    clip_c: float = 3.0  # dual clip: a negative-advantage token's loss is at most -A * clip_c (upstream)
    loss_agg_mode: str = LossAggMode.SEQ_MEAN_TOKEN_SUM.value  # see grpo.loss.LossAggMode
    kl_coef: float = 0.0  # k3 KL to the frozen init policy; 0 builds no reference model (upstream use_kl_loss off)
    old_logprobs: str = "recompute"  # ratio denominator: recompute teacher-forced before the update (upstream) |
    #                                  sampling: the rollout's own log-probs (saves a forward pass; deviation)
    lr_llm: float = 2e-6  # one learning rate for every parameter (upstream optim.lr)
    lr_vision: float = 2e-6
    lr_projector: float = 2e-6
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of the lr (upstream min_lr_ratio)
    warmup_iterations: int = 0  # (upstream lr_warmup_steps_ratio 0)
    max_iterations: int = 700  # schedule length and run end (upstream: 100 epochs x 7 batches of 64 of 500 prompts)
    betas: tuple[float, float] = (0.9, 0.999)  # torch AdamW defaults (upstream)
    eps: float = 1e-8
    weight_decay: float = 0.01  # on every parameter, biases and norms too (upstream AdamW over all parameters)
    no_decay_norms_and_biases: bool = False  # SFT's exemption of biases and LayerNorms (deviation when true)
    grad_clip: float = 1.0
    bf16: bool | str = "auto"  # "auto": bf16 on GPUs that support it, fp32 on CPU
    deepspeed: Path = Path("config/train/zero2.json")
    seed: int = 429  # prompt order and every sampled token (upstream seed 429)

    save_every: int = 4  # iterations per checkpoint; the last is always saved (upstream save_freq 4)
    keep_train_states: int = 2  # newest checkpoints that keep their optimizer state (resumable); 0 = all

    def __post_init__(self) -> None:
        positive = ("prompts_per_iteration", "group_size", "max_steps", "execute_steps", "camera_size", "env_workers",
                    "ppo_epochs", "mini_batch_size", "slice_steps", "max_iterations", "save_every", "lr_llm")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("settle_steps", "max_cot_tokens", "max_rollout_rounds", "warmup_iterations", "kl_coef",
                     "keep_train_states", "lr_vision", "lr_projector", "weight_decay", "grad_clip", "eps",
                     "clip_low", "clip_high", "success_reward", "format_reward"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.filter_low <= self.filter_high <= 1.0:
            raise ConfigError(f"filter bounds must satisfy 0 <= filter_low <= filter_high <= 1, got "
                              f"[{self.filter_low}, {self.filter_high}]")
        if self.clip_c <= 1.0:
            raise ConfigError(f"clip_c (dual clip) must be > 1, got {self.clip_c}")
        if self.clip_low >= 1.0:
            raise ConfigError(f"clip_low must be < 1 (the ratio's floor is 1 - clip_low), got {self.clip_low}")
        if self.loss_agg_mode not in AGG_MODES:
            raise ConfigError(f"unknown loss_agg_mode {self.loss_agg_mode!r}; expected one of {AGG_MODES}")
        if self.old_logprobs not in OLD_LOGPROB_SOURCES:
            raise ConfigError(f"old_logprobs must be one of {OLD_LOGPROB_SOURCES}, got {self.old_logprobs!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.bf16 not in (True, False, "auto"):
            raise ConfigError(f"bf16 must be true, false or auto, got {self.bf16!r}")
        if self.trajectories_per_iteration % self.mini_batch_size:
            raise ConfigError(
                f"prompts_per_iteration x group_size = {self.trajectories_per_iteration} trajectories do not split "
                f"into mini-batches of {self.mini_batch_size}; make mini_batch_size a divisor"
            )
        try:
            get_suite(self.suite)
            self.protocol  # noqa: B018 (validates the episode settings)
            self.decode  # noqa: B018
            self.init_state_ids  # noqa: B018
            self.task_ids  # noqa: B018
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @property
    def trajectories_per_iteration(self) -> int:
        return self.prompts_per_iteration * self.group_size

    @property
    def agg_mode(self) -> LossAggMode:
        return LossAggMode(self.loss_agg_mode)

    @property
    def task_ids(self) -> tuple[int, ...]:
        count = get_suite(self.suite).num_tasks
        if self.tasks.strip() == "all":
            return tuple(range(count))
        return parse_index_ranges(self.tasks, count, "tasks")

    @property
    def init_state_ids(self) -> tuple[int, ...]:
        return parse_index_ranges(self.init_states, INIT_STATES, "init_states")

    @property
    def protocol(self) -> EpisodeProtocol:
        return EpisodeProtocol(settle_steps=self.settle_steps, camera_size=self.camera_size,
                               execute_steps=self.execute_steps, seed=self.seed)

    @property
    def decode(self) -> DecodeConfig:
        """Sample-mode decoding of the rollouts; its per-token distributions are what the loss scores."""
        return DecodeConfig(max_cot_tokens=self.max_cot_tokens, cot_temperature=self.cot_temperature,
                            action_temperature=self.action_temperature)

    def check_world(self, world_size: int) -> None:
        """Refuse batch sizes that do not split evenly over `world_size` ranks."""
        for name in ("prompts_per_iteration", "mini_batch_size"):
            if getattr(self, name) % world_size:
                raise ConfigError(f"{name} {getattr(self, name)} does not split over {world_size} processes; make "
                                  f"it a multiple of {world_size}")

    def check_inputs(self) -> None:
        """Refuse a missing init checkpoint, DeepSpeed JSON or an unwritable output before anything starts."""
        if not self.init_checkpoint.is_dir():
            raise FileNotFoundError(
                f"init checkpoint {self.init_checkpoint} does not exist (config key 'init_checkpoint'); GRPO starts "
                "from an SFT checkpoint (`dtvla-tiny-checkpoint DIR` writes a random-init one for trials)"
            )
        check_run_files(self.deepspeed, self.output_dir)

    def to_dict(self) -> dict:
        return plain_values(self)
