"""`dtvla-eval`: evaluate a checkpoint on a LIBERO suite with the DeepThinkVLA protocol (see docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from dtvla_sim_bridge.eval.config import (
    CAMERA_SIZE,
    CHUNK_STEPS,
    GLOBAL_SEED,
    MAX_COT_TOKENS,
    MODES,
    EvalConfig,
    EvalInputError,
    check_trials,
    parse_video_episodes,
    resolve_tasks,
    suite_max_steps,
    suite_tasks,
)
from dtvla_sim_bridge.sim import SUITES, get_suite


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (safetensors + norm_stats.json)")
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(s.name for s in SUITES)}")
    parser.add_argument("--tasks", nargs="+", default=None, help="task ids or names (default: every task)")
    parser.add_argument("--trials", type=int, default=50, help="init states 0..N-1 per task (upstream: 50)")
    parser.add_argument("--mode", default="full", choices=MODES, help="CoT setting (paper: full, masked, random)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="episode step cap (default: the suite's, 220/280/300/620/400)")
    parser.add_argument("--long-horizon-520", action="store_true",
                        help="OpenVLA/openpi caps: libero_10 at 520 steps instead of DeepThinkVLA's 620")
    parser.add_argument("--replan-steps", type=int, default=CHUNK_STEPS,
                        help="actions of each chunk executed open-loop before the next query (upstream: all 10)")
    parser.add_argument("--workers", type=int, default=1, help="episode worker processes (one LIBERO env each)")
    parser.add_argument("--out", default=None, help="output directory (default: runs/eval-<suite>-<mode>)")
    parser.add_argument("--seed", type=int, default=GLOBAL_SEED, help="global seed (upstream: 429)")
    parser.add_argument("--camera-size", type=int, default=CAMERA_SIZE, help="render size in px (upstream: 256)")
    parser.add_argument("--max-cot-tokens", type=int, default=MAX_COT_TOKENS, help="CoT cap (upstream: 2048)")
    parser.add_argument("--device", default="cpu", help="torch device of the policy")
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16")
    parser.add_argument("--video-episodes", nargs="+", default=None, metavar="TASK:INIT",
                        help="episodes to record as mp4 (both views + CoT panel), e.g. 0:0 3:1")
    parser.add_argument("--via-ros", action="store_true",
                        help="run the episodes through the sim bridge and policy node (one at a time)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def build_config(args: argparse.Namespace) -> EvalConfig:
    """Validate everything that can be checked without starting a worker; EvalInputError says what to fix."""
    checkpoint = Path(args.checkpoint).expanduser().resolve()
    if not checkpoint.is_dir():
        raise EvalInputError(f"checkpoint directory {checkpoint} does not exist")
    try:
        spec = get_suite(args.suite)
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None
    max_steps = suite_max_steps(spec.name, args.max_steps, args.long_horizon_520)
    if args.trials < 1:
        raise EvalInputError(f"--trials must be >= 1, got {args.trials}")
    infos = suite_tasks(spec.name)
    tasks = resolve_tasks(args.tasks, infos, spec.name)
    check_trials(args.trials, tasks, infos, spec.name)
    out = Path(args.out or Path("runs") / f"eval-{spec.name}-{args.mode}").expanduser().resolve()
    return EvalConfig(
        checkpoint=checkpoint, suite=spec.name, tasks=tasks, trials=args.trials, max_steps=max_steps, out=out,
        mode=args.mode, replan_steps=args.replan_steps, workers=args.workers, seed=args.seed,
        camera_size=args.camera_size, max_cot_tokens=args.max_cot_tokens, device=args.device, dtype=args.dtype,
        video_episodes=parse_video_episodes(args.video_episodes, tasks, args.trials), via_ros=args.via_ros,
        step_caps={"deepthinkvla": spec.max_steps, "openvla": spec.openvla_max_steps},
    )


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
