"""`dtvla-eval`: evaluate a checkpoint or a baseline on a LIBERO suite, DeepThinkVLA protocol (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from dtvla_policy.protocol import COT_CAP_EVAL, EVAL_MODES, UPSTREAM_EPISODE, Mode
from dtvla_sim_bridge.eval.config import (
    MODEL_OPTIONS,
    EvalConfig,
    EvalInputError,
    PolicyKind,
    check_trials,
    parse_video_episodes,
    resolve_tasks,
    ros_defaults,
    sim_settings,
    suite_max_steps,
    suite_tasks,
)
from dtvla_sim_bridge.sim import SUITES, get_suite

# Options whose default depends on the path: protocol.py in process, the parameter file over ROS.
PATH_DEFAULT = " (default: {}; with --via-ros: the parameter file's)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=PolicyKind.MODEL.value, choices=[kind.value for kind in PolicyKind],
                        help="model: the checkpoint; noop: hold still, gripper open; replay: one recorded "
                        "demonstration per task, open-loop (baselines: the floor to read a model's rate against)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory (safetensors + norm_stats.json); --policy model only")
    parser.add_argument("--replay-dataset", default=None,
                        help="--policy replay: LeRobot dataset whose first episode of each task is replayed")
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(s.name for s in SUITES)}")
    parser.add_argument("--tasks", nargs="+", default=None, help="task ids or names (default: every task)")
    parser.add_argument("--trials", type=int, default=50, help="init states per task (upstream: 50)")
    parser.add_argument("--first-init-state", type=int, default=0,
                        help="the first init state of each task; the run takes --trials from it (upstream: 0; e.g. "
                        "40 with --trials 10 for init states a demo policy was not trained on)")
    parser.add_argument("--mode", default=None, choices=[mode.value for mode in EVAL_MODES],
                        help=f"CoT setting (paper: full, masked, random; default {Mode.FULL.value}); "
                        "--policy model only")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="episode step cap (default: the suite's, 220/280/300/620/400)")
    parser.add_argument("--long-horizon-520", action="store_true",
                        help="OpenVLA/openpi caps: libero_10 at 520 steps instead of DeepThinkVLA's 620")
    parser.add_argument("--replan-steps", type=int, default=None,
                        help="actions of each chunk executed open-loop before the next query"
                        + PATH_DEFAULT.format(f"all {UPSTREAM_EPISODE.execute_steps}, as upstream"))
    parser.add_argument("--workers", type=int, default=1, help="episode worker processes (one LIBERO env each)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: runs/eval-<suite>-<mode>, or -<policy> for a baseline)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"global seed (default: {UPSTREAM_EPISODE.seed}, as upstream; not with --via-ros)")
    parser.add_argument("--camera-size", type=int, default=None,
                        help="render size in px" + PATH_DEFAULT.format(UPSTREAM_EPISODE.camera_size))
    parser.add_argument("--object-jitter-m", type=float, default=None,
                        help="displace every movable object by up to this many metres in x and y after the init "
                        "state, seeded by env seed + init state (not upstream)" + PATH_DEFAULT.format(0))
    parser.add_argument("--max-cot-tokens", type=int, default=None,
                        help="CoT cap" + PATH_DEFAULT.format(f"{COT_CAP_EVAL}, the upstream eval cap"))
    parser.add_argument("--device", default=None, help="torch device of the policy" + PATH_DEFAULT.format("cpu"))
    parser.add_argument("--dtype", default=None, help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16"
                        + PATH_DEFAULT.format("auto"))
    parser.add_argument("--video-episodes", nargs="+", default=None, metavar="TASK:INIT",
                        help="episodes to record as mp4 (both views + CoT panel), e.g. 0:0 3:1")
    parser.add_argument("--via-ros", action="store_true",
                        help="run the episodes through the sim bridge and policy node (one at a time)")
    parser.add_argument("--params-file", default=None,
                        help="with --via-ros: the nodes' parameter file (default: dtvla-sim's, config/sim.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def build_config(args: argparse.Namespace) -> EvalConfig:
    """Validate everything that can be checked without starting a worker; EvalInputError says what to fix."""
    checkpoint = _existing_dir(args.checkpoint, "checkpoint")
    replay_dataset = _existing_dir(args.replay_dataset, "replay dataset")
    baseline = args.policy != PolicyKind.MODEL
    if baseline:
        given = [name for name in MODEL_OPTIONS if getattr(args, name) is not None]
        if given:
            raise EvalInputError(f"--{given[0].replace('_', '-')} applies to --policy model only, not to the "
                                 f"{args.policy} baseline")
    mode = None if baseline else args.mode or Mode.FULL.value
    try:
        spec = get_suite(args.suite)
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None
    max_steps = suite_max_steps(spec.name, args.max_steps, args.long_horizon_520)
    if args.trials < 1:
        raise EvalInputError(f"--trials must be >= 1, got {args.trials}")
    infos = suite_tasks(spec.name)
    tasks = resolve_tasks(args.tasks, infos, spec.name)
    check_trials(args.trials, tasks, infos, spec.name, args.first_init_state)
    init_states = range(args.first_init_state, args.first_init_state + args.trials)
    out = Path(args.out or Path("runs") / f"eval-{spec.name}-{mode or args.policy}").expanduser().resolve()
    settings: dict[str, Any] = {
        "checkpoint": checkpoint, "suite": spec.name, "tasks": tasks, "trials": args.trials,
        "first_init_state": args.first_init_state, "max_steps": max_steps,
        "out": out, "policy": args.policy, "replay_dataset": replay_dataset, "mode": mode, "workers": args.workers,
        "via_ros": args.via_ros,
        "video_episodes": parse_video_episodes(args.video_episodes, tasks, init_states),
        "step_caps": {"deepthinkvla": spec.max_steps, "openvla": spec.openvla_max_steps},
    }
    for name in ("replan_steps", "seed", "camera_size", "object_jitter_m", "max_cot_tokens", "device", "dtype"):
        if getattr(args, name) is not None:  # the others: the path's defaults
            settings[name] = getattr(args, name)
    if args.params_file is not None:
        settings["params_file"] = Path(args.params_file).expanduser().resolve()
    if args.via_ros and not baseline:  # a baseline over ROS is refused by EvalConfig
        try:
            used = sim_settings(settings.get("params_file"), mode, spec.name, max_steps, args.max_cot_tokens)
            settings = ros_defaults(used) | settings
        except (OSError, ValueError) as exc:
            raise EvalInputError(f"--via-ros: {exc}") from None
    return EvalConfig(**settings)


def _existing_dir(path: str | None, what: str) -> Path | None:
    """The absolute path of a directory given on the command line (None when not given)."""
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise EvalInputError(f"{what} directory {resolved} does not exist")
    return resolved


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dtvla_sim_bridge.eval.runner import OutputPaths, evaluate

    if threading.current_thread() is threading.main_thread():  # SIGTERM (e.g. a batch scheduler) stops like Ctrl-C
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    try:
        config = build_config(args)
        summary = evaluate(config, progress=not args.no_progress)
    except EvalInputError as exc:
        print(f"dtvla-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dtvla-eval: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    paths = OutputPaths.of(config.out, config.suite)
    print(paths.summary_md.read_text())
    print(json.dumps({"summary": str(paths.summary_json), "episodes": str(paths.episodes),
                      "manifest": str(paths.manifest), "success_rate": summary["total"]["success_rate"],
                      "errors": summary["total"]["errors"], "complete": summary["complete"]}))
    return 0 if summary["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
