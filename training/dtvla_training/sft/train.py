"""`dtvla-train-sft --config config/train/sft.yaml [--resume [STEP_DIR]] [--max-steps N ...]`: SFT with DeepSpeed.

Mirrors upstream `src/train.py` + `src/sft/sft_trainer.py` (HF Trainer under DeepSpeed ZeRO-2) as an explicit
loop around `deepspeed.initialize`: a client torch AdamW with the LLM / vision / projector groups, the
warmup-cosine LambdaLR, gradient accumulation and clipping by the engine, bf16 where supported.

Launch: plain `python`/console script = one process (RANK, WORLD_SIZE, MASTER_* default to a single local
process); `torchrun --nproc_per_node N` or `deepspeed --num_gpus N` for several (their `--local_rank` is
accepted). nccl on GPUs, gloo on CPU. Every config key is also a flag (`--max-steps 100`, `--output-dir X`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deepspeed
import deepspeed.comm.torch  # noqa: F401  (skip_shm_op_build patches it through sys.modules)
import torch
import torch.distributed as dist
import transformers
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from dtvla_policy.atomic_file import write_json, write_text
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.model.normalizer import QuantileNormalizer
from dtvla_training.data.augmentation import AugmentConfig
from dtvla_training.data.lerobot_dataset import CotDataset
from dtvla_training.sft import checkpoint_io
from dtvla_training.sft.collate import SftBatch, SftCollator
from dtvla_training.sft.config import ConfigError, SftConfig, field_names, load_config
from dtvla_training.sft.metrics import COUNTER_NAMES, MetricsSink, MetricsWindow
from dtvla_training.sft.objective import STAT_NAMES, SftObjective
from dtvla_training.sft.optim import make_optimizer, make_scheduler
from dtvla_training.sft.sampling import ResumableDistributedSampler, SeededSamples

log = logging.getLogger("dtvla_training.sft")

DATA_REPORT_FILE = "data_report.json"  # the reader's skip counts and the run's decode-time fallbacks


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN/inf; raised on every rank at the same step."""


@dataclass
class TrainResult:
    """What a finished `train` call leaves behind."""

    step: int  # optimizer steps completed (== config.max_steps)
    checkpoint: Path  # the last checkpoint directory (policy-loadable)
    model: DeepThinkVLA  # the trained model as held by this rank
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics records of this call (rank 0 only)


# ---------------------------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_shm_op_build() -> None:
    """On CPU, DeepSpeed's TorchBackend JIT-compiles the `deepspeed_shm_comm` C++ op on first use (~50 s, needs
    g++) for a faster intra-node allreduce. CPU runs here are tests and benchmarks, where gloo's allreduce is
    enough: make the builder return None, which DeepSpeed treats as "op unavailable" and falls back to
    torch.distributed. The module must be taken from sys.modules: `import deepspeed.comm.torch as m` binds the
    torch package (deepspeed.comm re-exports a `torch` attribute)."""
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


def launch_ranks() -> tuple[int, int]:
    """(rank, world size) as the launcher set them (torchrun / deepspeed), else one local process (the defaults
    are written to the environment, where the process group reads them). Creates no process group."""
    if "WORLD_SIZE" not in os.environ:  # not started by torchrun / deepspeed: one local process
        defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(_free_port())}
        for key, value in defaults.items():
            os.environ.setdefault(key, value)
    os.environ.setdefault("LOCAL_RANK", "0")
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def init_distributed() -> torch.device:
    """Join (or create) the process group; returns this rank's device. Idempotent within a process."""
    cuda = torch.cuda.is_available()
    launch_ranks()
    if not cuda:
        skip_shm_op_build()
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False, verbose=False)
    if cuda:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(setting)


def deepspeed_config(config: SftConfig, world_size: int, bf16: bool) -> dict[str, Any]:
    """The JSON at `config.deepspeed` with its "auto" (or absent) entries filled from `config`."""
    return filled_deepspeed_json(config.deepspeed, config.micro_batch_size, config.grad_accum_steps, world_size,
                                 config.grad_clip, bf16)


def filled_deepspeed_json(path: Path, micro_batch_size: int, grad_accum_steps: int, world_size: int,
                          grad_clip: float, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed JSON at `path` with its "auto" (or absent) entries filled from the run's YAML config (SFT or
    GRPO). A concrete JSON value that contradicts the YAML is refused rather than silently preferred."""
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from err
    for section in ("optimizer", "scheduler"):
        if section in ds:
            raise ConfigError(
                f"{path} has a '{section}' section; the trainer builds its own (AdamW parameter groups, cosine "
                "schedule): remove it and set the learning rates in the YAML config"
            )
    wanted = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum_steps,
        "train_batch_size": micro_batch_size * grad_accum_steps * world_size,
        "gradient_clipping": grad_clip,
    }
    for key, value in wanted.items():
        current = ds.get(key, "auto")
        if current != "auto" and current != value:
            raise ConfigError(f"{path}: {key} is {current} but the YAML config implies {value} (use auto)")
        ds[key] = value
    for precision, enabled in (("bf16", bf16), ("fp16", False)):
        section = ds.setdefault(precision, {})
        current = section.get("enabled", "auto")
        if current != "auto" and current != enabled:
            raise ConfigError(
                f"{path}: {precision}.enabled is {current} but the run uses {precision}={enabled} "
                "(set bf16 in the YAML config; fp16 is not supported)"
            )
        section["enabled"] = enabled
    return ds


# ---------------------------------------------------------------------------------------------- trainer
class SftTrainer:
    """One SFT run on this rank: model, data, DeepSpeed engine, and the loop (`fit`)."""

    def __init__(self, config: SftConfig, resume: str | Path | None = None) -> None:
        """`resume`: None (fresh run), "latest", or a `step_*` directory of `config.output_dir` (or another run).

        Everything that can be refused (inputs, output directory, DeepSpeed JSON, checkpoint config and tokenizer,
        norm stats, the dataset's index, the resume state) is checked before the process group and the model exist:
        a bad run costs seconds, not a model load. Those refusals are `ConfigError` or `FileNotFoundError`.
        """
        self.config = config
        self.rank, self.world_size = launch_ranks()
        self.step, self.epoch, self.samples_into_epoch = 0, 0, 0
        self.load_fallbacks = 0  # decode-time fallbacks of all ranks and workers since step 0 (see `_micro_step`)
        try:
            resume_dir = self._preflight(resume)
        except (ConfigError, FileNotFoundError):
            raise
        except (ValueError, OSError) as err:  # the reader's and the normaliser's refusals of bad data
            raise ConfigError(str(err)) from None

        self.device = init_distributed()
        if dist.get_world_size() != self.world_size:
            raise RuntimeError(f"process group has {dist.get_world_size()} ranks, WORLD_SIZE says {self.world_size}")
        model = checkpoint_io.load_init_weights(config.init_checkpoint, self.init_files)
        objective = SftObjective(model)
        self.optimizer = make_optimizer(objective, config)
        self.engine, _, _, _ = deepspeed.initialize(
            model=objective, optimizer=self.optimizer, lr_scheduler=make_scheduler(config), config=self.ds_config,
        )
        if resume_dir is not None:
            self._resume(resume_dir)
        self._write_data_report()

    def _preflight(self, resume: str | Path | None) -> Path | None:
        """Validate and read everything but the weights; returns the checkpoint to resume from, if any."""
        config = self.config
        config.check_inputs()
        if resume is None and checkpoint_io.existing_checkpoints(config.output_dir):
            raise ConfigError(
                f"{config.output_dir} already holds checkpoints; pass --resume to continue that run "
                "or choose another output_dir"
            )
        resume_dir = checkpoint_io.resolve_resume_dir(config.output_dir, resume) if resume is not None else None
        self.bf16 = resolve_bf16(config.bf16, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.ds_config = deepspeed_config(config, self.world_size, self.bf16)
        self.init_files = checkpoint_io.load_init_files(config.init_checkpoint)
        self.tokenizer, self.token_ids = self.init_files.tokenizer, self.init_files.token_ids
        vision = self.init_files.model_config.vision_config
        self.collator = SftCollator(
            self.tokenizer, self.token_ids, load_norm_stats(config.norm_stats_path),
            image_size=vision.image_size, tokens_per_image=(vision.image_size // vision.patch_size) ** 2,
            reasoning_dropout=config.reasoning_dropout, max_reasoning_tokens=config.max_reasoning_tokens,
            seed=config.seed,
        )
        self.dataset = self._read_dataset(vision.image_size)
        self.items = SeededSamples(self.dataset, config.seed)
        self.sampler = ResumableDistributedSampler(self.dataset, self.world_size, self.rank, seed=config.seed)
        if self.sampler.num_samples < config.micro_batch_size:
            raise ConfigError(
                f"{len(self.dataset)} samples over {self.world_size} processes leave {self.sampler.num_samples} per "
                f"process, fewer than micro_batch_size {config.micro_batch_size}"
            )
        if resume_dir is not None:
            self._check_resume_geometry(checkpoint_io.read_trainer_state(resume_dir), resume_dir)
        return resume_dir

    @property
    def model(self) -> DeepThinkVLA:
        return self.engine.module.vla

    def _read_dataset(self, image_size: int) -> CotDataset:
        """The reader skips frames whose reasoning exceeds the cap (a cut thought would teach the model to close
        `</think>` mid-sentence); the collator's truncation is only a guard for other datasets."""
        augment = AugmentConfig(seed=self.config.seed) if self.config.augment else None
        dataset = CotDataset(self.config.dataset, tokenizer=self.tokenizer, image_size=image_size, augment=augment,
                             max_reasoning_tokens=self.config.max_reasoning_tokens,
                             scan_images=self.config.scan_images)
        return dataset

    def _write_data_report(self) -> None:
        """data_report.json: the reader's index counts and the decode-time fallbacks of the run so far (rank 0;
        written before the first step, at every checkpoint and at the end)."""
        if self.rank == 0:
            report = self.dataset.report.as_dict() | {"load_fallbacks": self.load_fallbacks, "through_step": self.step}
            write_json(self.config.output_dir / DATA_REPORT_FILE, report)

    def _check_resume_geometry(self, state: dict[str, Any], step_dir: Path) -> None:
        geometry = {"world_size": self.world_size, "micro_batch_size": self.config.micro_batch_size,
                    "grad_accum_steps": self.config.grad_accum_steps, "seed": self.config.seed,
                    "dataset_size": len(self.dataset)}
        changed = {k: (state[k], v) for k, v in geometry.items() if state[k] != v}
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ConfigError(f"cannot resume {step_dir} exactly: {detail}; the data position would not match")

    def _resume(self, step_dir: Path) -> None:
        state = checkpoint_io.load_train_state(self.engine, step_dir)
        self._check_resume_geometry(state, step_dir)
        self.step, self.epoch, self.samples_into_epoch = state["step"], state["epoch"], state["samples_into_epoch"]
        self.load_fallbacks = int(state.get("load_fallbacks", 0))  # absent in checkpoints of older versions
        if self.rank == 0:
            log.info("resumed from %s at step %d (epoch %d)", step_dir, self.step, self.epoch)

    # ------------------------------------------------------------------------------------------ data
    def _micro_batches(self) -> Iterator[SftBatch]:
        """Endless stream of this rank's micro-batches from the saved position; keeps the position current."""
        cuda = self.device.type == "cuda"
        while True:
            self.sampler.set_position(self.epoch, self.samples_into_epoch)
            loader = DataLoader(
                self.items, batch_size=self.config.micro_batch_size, sampler=self.sampler, drop_last=True,
                collate_fn=self.collator.collate_items, num_workers=self.config.num_workers, pin_memory=cuda,
            )
            for batch in loader:
                self.samples_into_epoch += batch.n_samples
                yield batch
            self.epoch, self.samples_into_epoch = self.epoch + 1, 0

    # ------------------------------------------------------------------------------------------ loop
    def fit(self, crash_after_step: int | None = None) -> TrainResult:
        """Train up to `config.max_steps` optimizer steps, logging and checkpointing on the way.

        `crash_after_step`: SIGKILL this process once that step's metrics and checkpoint (if due) are written, as
        a crash would; it puts the crash of the resume test at an exact step instead of racing the run.
        """
        config = self.config
        sink = open_outputs(config, self.step) if self.rank == 0 else None
        records: list[dict[str, Any]] = []
        checkpoint = None
        stream = self._micro_batches()
        window = MetricsWindow()
        progress = tqdm(total=config.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                        disable=self.rank != 0, mininterval=1.0)
        try:
            while self.step < config.max_steps:
                for micro in range(config.grad_accum_steps):
                    window.add(self._micro_step(next(stream), micro))
                self.step += 1
                self._check_grad_norm()
                progress.update(1)
                last = self.step == config.max_steps
                if self.step % config.log_every == 0 or last:
                    record = self._record(window)
                    window.reset()
                    if sink is not None:
                        sink.write(record)
                        records.append(record)
                        progress.set_postfix(loss=f"{record['loss']:.4f}", act_acc=f"{record['action_accuracy']:.3f}",
                                             l1=f"{record['action_l1']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if self.step % config.save_every == 0 or last:
                    checkpoint = self._save(records[-1] if records else {})
                    self._write_data_report()
                    window.restart_clock()  # saving time is not training throughput
                if self.step == crash_after_step:
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            stream.close()  # shuts DataLoader workers down now, not at garbage collection
            progress.close()
            if sink is not None:
                sink.close()
        if checkpoint is None:  # resumed at max_steps: nothing left to do
            checkpoint = config.output_dir / checkpoint_io.CHECKPOINTS_DIR / checkpoint_io.step_dir_name(self.step)
        return TrainResult(step=self.step, checkpoint=checkpoint, records=records, model=self.model)

    def _micro_step(self, batch: SftBatch, micro: int) -> torch.Tensor:
        """Forward, global NaN check, backward, engine step; returns the stats summed over all ranks."""
        batch = batch.to(self.device)
        out = self.engine(input_ids=batch.input_ids, segments=batch.segments, labels=batch.labels,
                          pixel_values=batch.pixel_values)
        counters = {"micro_batches": 1, "tokens": batch.n_tokens, "samples": batch.n_samples,
                    "reasoning_truncated": batch.n_reasoning_truncated, "reasoning_dropped": batch.n_reasoning_dropped,
                    "load_fallbacks": batch.n_load_fallbacks}
        extra = torch.tensor([float(counters[name]) for name in COUNTER_NAMES], dtype=torch.float64)
        stats = torch.cat([out.stats, extra]).to(self.device)
        dist.all_reduce(stats)  # every rank sees the same numbers, so every rank stops together on NaN
        # The batch carries its fallbacks out of the DataLoader worker that read it; summed over ranks here.
        self.load_fallbacks += int(stats[len(STAT_NAMES) + COUNTER_NAMES.index("load_fallbacks")])
        if not math.isfinite(float(stats[0])):
            raise NonFiniteLossError(
                f"loss is {float(stats[0]) / self.world_size} at step {self.step + 1} (micro-batch {micro + 1} of "
                f"{self.config.grad_accum_steps}); stopped before applying it. Lower the learning rates or check the "
                f"data; the last checkpoint under {self.config.output_dir / checkpoint_io.CHECKPOINTS_DIR} is intact"
            )
        self.engine.backward(out.loss)
        self.engine.step()
        return stats

    def _check_grad_norm(self) -> None:
        """A finite loss can still give inf/NaN gradients (overflow in backward); the update is already applied
        then, so stop before the next one (the global norm is the same on every rank)."""
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None and not math.isfinite(float(grad_norm)):
            raise NonFiniteLossError(
                f"gradient norm is {float(grad_norm)} at step {self.step}; the weights are no longer usable. Resume "
                f"from the last checkpoint under {self.config.output_dir / checkpoint_io.CHECKPOINTS_DIR} with lower "
                "learning rates or check the data"
            )

    def _record(self, window: MetricsWindow) -> dict[str, Any]:
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, **window.summary(),
                                  "load_fallbacks_total": self.load_fallbacks}
        grad_norm = self.engine.get_global_grad_norm()
        record["grad_norm"] = float(grad_norm) if grad_norm is not None else math.nan
        for group in self.optimizer.param_groups:
            if not group["name"].endswith("_no_decay"):
                record[f"lr_{group['name']}"] = group["lr"]
        return record

    def _save(self, last_record: dict[str, Any]) -> Path:
        state = {"step": self.step, "epoch": self.epoch, "samples_into_epoch": self.samples_into_epoch,
                 "world_size": self.world_size, "micro_batch_size": self.config.micro_batch_size,
                 "grad_accum_steps": self.config.grad_accum_steps, "seed": self.config.seed,
                 "dataset_size": len(self.dataset), "load_fallbacks": self.load_fallbacks, "metrics": last_record}
        path = checkpoint_io.save_checkpoint(
            self.engine, self.model, self.tokenizer, self.config.norm_stats_path, self.config.output_dir,
            self.step, state, self.config.to_dict(), self.config.keep_train_states,
        )
        if self.rank == 0:
            tqdm.write(f"saved {path}")
        return path


def open_outputs(config: Any, position: int) -> MetricsSink:
    """Rank 0's run outputs: config.yaml (the resolved config) and the metrics sink, continuing at `position`."""
    write_text(config.output_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return MetricsSink(config.output_dir, position)


def load_norm_stats(path: Path) -> QuantileNormalizer:
    """The run's normaliser; ConfigError naming the file when it is not usable norm stats."""
    try:
        return QuantileNormalizer.from_json(path)
    except FileNotFoundError:
        raise
    # AttributeError/TypeError/KeyError: a JSON value of the wrong shape that the normaliser does not name itself
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ConfigError(
            f"norm stats {path} are unusable ({err!r}); recompute them with `dtvla-norm-stats DATASET` "
            "(config key 'norm_stats')"
        ) from None


def train(config: SftConfig, resume: str | Path | None = None, crash_after_step: int | None = None) -> TrainResult:
    """Run SFT to `config.max_steps` (see `SftTrainer`); the process group stays up for the caller."""
    return SftTrainer(config, resume=resume).fit(crash_after_step)


# ---------------------------------------------------------------------------------------------- CLI
def trainer_parser(prog: str, description: str, example_yaml: str, crash_unit: str) -> argparse.ArgumentParser:
    """The options both trainers share: --config, --resume, the launchers' --local_rank, --log-level and the
    resume tests' --crash-after-<unit>."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, type=Path, help=f"YAML config (see {example_yaml})")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="STEP_DIR",
                        help="continue the run in output_dir from its latest checkpoint, or from STEP_DIR")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(f"--crash-after-{crash_unit}", dest="crash_after", type=int, default=None, metavar="N",
                        help=f"for resume tests: SIGKILL this process right after {crash_unit} N, as a crash would")
    return parser


def parse_overrides(parser: argparse.ArgumentParser, argv: list[str] | None, names: list[str]
                    ) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Add one flag per config key to `parser` and parse; returns the arguments and the overrides given."""
    overrides = parser.add_argument_group("config overrides (YAML syntax: 1e-5, true, [0.9, 0.95], null)")
    for name in names:
        overrides.add_argument(f"--{name.replace('_', '-')}", dest=f"override_{name}", metavar="VALUE")
    args = parser.parse_args(argv)
    values = {name: yaml.safe_load(getattr(args, f"override_{name}")) for name in names
              if getattr(args, f"override_{name}") is not None}
    return args, values


def setup_process(args: argparse.Namespace) -> None:
    """Environment and logging of a trainer process, before any DeepSpeed work."""
    if args.local_rank is not None:  # the deepspeed launcher passes it as a flag as well as in the environment
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("DeepSpeed").setLevel(logging.DEBUG if args.log_level == "DEBUG" else logging.WARNING)
    transformers.utils.logging.disable_progress_bar()  # the trainer's own bar is the one to watch


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = trainer_parser("dtvla-train-sft", __doc__.splitlines()[0], "config/train/sft.yaml", "step")
    return parse_overrides(parser, argv, field_names())


def run_cli(prog: str, run: Callable[[], str], stopped: tuple[type[Exception], ...] = (NonFiniteLossError,)) -> None:
    """A trainer CLI's body: `run()` trains and returns the line rank 0 prints at the end. Exit 2 with one line for
    input refused before training, 1 for a run that stopped (`stopped`); the process group goes either way."""
    try:
        done = run()
    except (ConfigError, FileNotFoundError) as err:  # refused before training started
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except stopped as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(done)


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    setup_process(args)

    def run() -> str:
        result = train(load_config(args.config, overrides), resume=args.resume, crash_after_step=args.crash_after)
        return f"finished step {result.step}; last checkpoint {result.checkpoint}"

    run_cli("dtvla-train-sft", run)


if __name__ == "__main__":
    main()
