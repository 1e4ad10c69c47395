"""`dtvla-replay BAG --checkpoint DIR`: a recorded run's observations through a checkpoint, compared chunk by chunk.

Prints the JSON report (also written to --out/replay.json with the self-contained replay.html beside it). Exit
codes: 0 when it ran (whether or not the chunks differ), 2 for refused input (not a bag, no chunks, a bad
checkpoint or mode), as dtvla-infer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dtvla_policy.atomic_file import write_json, write_text
from dtvla_policy.inference.engine import PolicyEngine
from dtvla_policy.protocol import Mode
from dtvla_policy.recording.replay import NODE_ACTION_LIMITS, replay_chunks, summary
from dtvla_policy.recording.replay_report import render_html
from dtvla_policy.recording.trace import BagTrace

EXIT_REFUSED = 2
GREEDY_MODES = (Mode.FULL.value, Mode.MASKED.value, Mode.AR_ACTIONS.value)  # deterministic: replay can match


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-replay", description=__doc__.splitlines()[0])
    parser.add_argument("bag", help="rosbag2 directory recorded by dtvla-record (or dtvla-sim --record)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory to replay with")
    parser.add_argument("--mode", default=None, choices=[m.value for m in Mode],
                        help="engine mode (default: the one the node ran, from its recorded diagnostics)")
    parser.add_argument("--max-cot-tokens", type=int, default=None, help="CoT cap (default: the node's, recorded)")
    parser.add_argument("--namespace", default="", help="the robot's namespace in the bag, e.g. robot1")
    parser.add_argument("--action-limits", type=float, nargs=2, default=NODE_ACTION_LIMITS, metavar=("LOW", "HIGH"),
                        help="clip like the node's action_limits (default: its defaults, -1 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 CUDA, fp32 CPU)")
    parser.add_argument("--out", default=None, help="directory for replay.json and replay.html (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        records = BagTrace.read(args.bag, args.namespace).chunk_records()
        if not records:
            raise ValueError(f"{args.bag}: no recorded chunk has its camera pair in the bag")
        engine = PolicyEngine.from_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype)
        comparisons = replay_chunks(records, engine, args.mode, args.max_cot_tokens, tuple(args.action_limits))
    except (FileNotFoundError, ValueError) as err:
        print(f"dtvla-replay: error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    report = {"bag": str(Path(args.bag).resolve()), "checkpoint": str(Path(args.checkpoint).resolve()),
              "namespace": args.namespace or "/", "mode_override": args.mode,
              "greedy": all(c.mode in GREEDY_MODES for c in comparisons), "summary": summary(comparisons),
              "chunks": [c.as_dict() for c in comparisons]}
    if args.out:
        out = Path(args.out)
        write_json(out / "replay.json", report)
        header = {k: v for k, v in report.items() if k != "chunks"}
        write_text(out / "replay.html", render_html(comparisons, header))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
