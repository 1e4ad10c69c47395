"""`dtvla-annotate DATASET OUT`: write a CoT-annotated copy of a LeRobot v2.1 dataset (see `pipeline`).

    dtvla-annotate demos/ demos-cot/                                  # every frame from its scene state
    DTVLA_VLM_URL=https://api.openai.com/v1 DTVLA_VLM_MODEL=gpt-4o DTVLA_VLM_API_KEY=... \\
        dtvla-annotate demos/ demos-cot/ --annotator propagate --key-frame-annotator vlm --review-key-frames

A bad input or setting exits 2 with one line; a run that finishes exits 0 even when frames failed the checks (they
are listed in OUT/meta/annotation_report.md and OUT/meta/review_queue.jsonl).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

from dtvla_training.annotate.chat_client import API_KEY_ENV, ChatError, ChatSettings
from dtvla_training.annotate.checks import DEFAULT_MAX_LENGTH, CheckConfig, LengthCounter
from dtvla_training.annotate.key_frames import KeyFrameConfig
from dtvla_training.annotate.pipeline import AnnotateConfig, annotate_dataset
from dtvla_training.annotate.registry import (
    ANNOTATORS,
    KEY_FRAME_ANNOTATORS,
    AnnotatorOptions,
    build_annotator,
    uses_vlm,
)
from dtvla_training.annotate.report import REPORT_MARKDOWN, REVIEW_QUEUE, ReviewPolicy
from dtvla_training.annotate.scene_text import LocationFrame
from dtvla_training.data.norm_stats import OUTLIER_IQR_MULTIPLE

CACHE_ENV = "DTVLA_VLM_CACHE"
DEFAULT_CACHE = Path("~/.cache/dtvla/vlm")


def parser() -> argparse.ArgumentParser:
    defaults_k = KeyFrameConfig()
    defaults_c = {f.name: f.default for f in fields(ChatSettings)}
    p = argparse.ArgumentParser(prog="dtvla-annotate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", type=Path, help="input LeRobot v2.1 dataset directory")
    p.add_argument("out", type=Path, help="output directory to create (must not exist or be empty)")
    p.add_argument("--annotator", default="privileged", help=f"one of {', '.join(ANNOTATORS)}")
    p.add_argument("--key-frame-annotator", default="privileged",
                   help=f"what describes the key frames for propagate: one of {', '.join(KEY_FRAME_ANNOTATORS)}")
    g = p.add_argument_group("key frames")
    g.add_argument("--pause-threshold", type=float, default=defaults_k.pause_threshold,
                   help="translation command norm below which the arm counts as pausing")
    g.add_argument("--pause-min-frames", type=int, default=defaults_k.pause_min_frames,
                   help="a pause lasts at least this many consecutive frames")
    g.add_argument("--min-gap", type=int, default=defaults_k.min_gap,
                   help="key frames closer than this many frames merge")
    g.add_argument("--location-band", type=float, default=LocationFrame().band,
                   help="metres around the table centre called 'center' (privileged text)")
    p.add_argument("--outlier-iqr-multiple", type=float, default=OUTLIER_IQR_MULTIPLE, metavar="K",
                   help="norm stats written beside the data leave out frames beyond median +- K x IQR "
                        "(as dtvla-norm-stats; 0 keeps every frame)")
    g = p.add_argument_group("checks and review")
    g.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                   help="longest reasoning kept: tokens with --tokenizer, else UTF-8 bytes")
    g.add_argument("--tokenizer", help="checkpoint (or tokenizer) directory whose tokenizer measures --max-length")
    g.add_argument("--min-confidence", type=float, default=ReviewPolicy().min_confidence,
                   help="queue annotations less confident than this for review")
    g.add_argument("--review-key-frames", action="store_true", help="queue every key frame for review")
    g = p.add_argument_group("vlm (any OpenAI-compatible chat-completions endpoint)")
    g.add_argument("--vlm-url", help="base URL, e.g. https://api.openai.com/v1; None: $DTVLA_VLM_URL")
    g.add_argument("--vlm-model", help="model name; None: $DTVLA_VLM_MODEL")
    g.add_argument("--vlm-api-key-env", default=API_KEY_ENV,
                   help="environment variable holding the API key (keys are never taken on the command line)")
    g.add_argument("--vlm-cache", type=Path, help=f"answer cache directory; None: ${CACHE_ENV}, else {DEFAULT_CACHE}")
    g.add_argument("--vlm-timeout", type=float, default=defaults_c["timeout_s"], help="seconds per request")
    g.add_argument("--vlm-retries", type=int, default=defaults_c["max_retries"], help="retries on 429/5xx/timeouts")
    g.add_argument("--vlm-backoff", type=float, default=defaults_c["backoff_s"], help="first retry delay (s), doubling")
    g.add_argument("--vlm-rpm", type=float, default=defaults_c["requests_per_minute"], help="requests per minute")
    return p


def options_from_args(args: argparse.Namespace) -> AnnotatorOptions:
    options = AnnotatorOptions(key_frame_annotator=args.key_frame_annotator,
                               locations=LocationFrame(band=args.location_band))
    if not uses_vlm(args.annotator, options):
        return options
    chat = ChatSettings.from_env(url=args.vlm_url, model=args.vlm_model, api_key_env=args.vlm_api_key_env,
                                 timeout_s=args.vlm_timeout, max_retries=args.vlm_retries,
                                 backoff_s=args.vlm_backoff, requests_per_minute=args.vlm_rpm)
    cache = args.vlm_cache or Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
    return replace(options, chat=chat, cache_dir=cache.expanduser())


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="dtvla-annotate: %(message)s")
    try:
        annotator = build_annotator(args.annotator, options_from_args(args))
        config = AnnotateConfig(
            dataset=args.dataset, out=args.out,
            key_frames=KeyFrameConfig(pause_threshold=args.pause_threshold, pause_min_frames=args.pause_min_frames,
                                      min_gap=args.min_gap),
            checks=CheckConfig(max_length=args.max_length, counter=LengthCounter.from_checkpoint(args.tokenizer)),
            review=ReviewPolicy(min_confidence=args.min_confidence, review_key_frames=args.review_key_frames),
            outlier_iqr_multiple=args.outlier_iqr_multiple,
        )
        report = annotate_dataset(config, annotator)
    except (OSError, ValueError, ChatError) as err:  # bad input, settings or endpoint: one line, no traceback
        print(f"dtvla-annotate: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = report.summary()
    out = args.out.expanduser().resolve()
    print(f"wrote {out}: {summary['frames_kept']}/{summary['frames']} frames annotated, "
          f"{summary['frames_failed']} failed the checks (reasoning null), {summary['key_frames']} key frames in "
          f"{summary['episodes']} episodes; {summary['review_queue']} queued for review")
    print(f"report: {out / REPORT_MARKDOWN}; review queue: {out / REVIEW_QUEUE}")


if __name__ == "__main__":
    main()
