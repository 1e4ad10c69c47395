"""`dtvla-export-checkpoint SRC DST`: a deployable copy of a trained checkpoint, weights cast (bf16 by default).

A training step directory carries the optimizer state and fp32 weights; a robot (or the repository's `assets/`)
needs only the policy files. The copy is loaded back through the node's loader before it is renamed into place, so
a written export always loads. `--max-mb` refuses an export larger than a budget (the embedded demo checkpoint's
25 MB) instead of writing it. `--include FILE` copies extra files beside the weights (e.g. the eval summary).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.model.checkpoint import NORM_STATS_FILE, load_checkpoint, resolve_dtype

MB = 1_000_000


def export_checkpoint(src: Path, dst: Path, dtype: str = "bfloat16", max_mb: float | None = None,
                      include: tuple[Path, ...] = ()) -> dict[str, object]:
    """Write `dst` (a new directory) from checkpoint `src`; returns what was written and its size."""
    torch_dtype = resolve_dtype(dtype, "cpu")
    checkpoint = load_checkpoint(src, device="cpu", dtype=torch_dtype)
    for extra in include:
        if not extra.is_file():
            raise FileNotFoundError(f"--include {extra}: no such file")
    with new_directory(dst) as tmp:
        checkpoint.model.save_pretrained(tmp, safe_serialization=True)
        checkpoint.tokenizer.save_pretrained(tmp)
        shutil.copyfile(Path(src) / NORM_STATS_FILE, tmp / NORM_STATS_FILE)
        for extra in include:
            shutil.copyfile(extra, tmp / extra.name)
        size = sum(f.stat().st_size for f in tmp.iterdir() if f.is_file())
        if max_mb is not None and size > max_mb * MB:
            raise ValueError(f"the export is {size / MB:.1f} MB, over the {max_mb:g} MB budget (--max-mb)")
        load_checkpoint(tmp, device="cpu", dtype=torch_dtype)  # what is written must load
    return {"source": str(src), "export": str(dst), "dtype": str(torch_dtype).removeprefix("torch."),
            "megabytes": round(size / MB, 3), "parameters": sum(p.numel() for p in checkpoint.model.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dtvla-export-checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="checkpoint directory (e.g. a dtvla-train-sft step directory)")
    parser.add_argument("dst", type=Path, help="directory to create")
    parser.add_argument("--dtype", default="bfloat16", help="weight dtype of the copy: bfloat16 | float16 | float32")
    parser.add_argument("--max-mb", type=float, default=None, help="refuse an export larger than this (MB)")
    parser.add_argument("--include", type=Path, nargs="*", default=[], help="extra files to copy beside the weights")
    args = parser.parse_args(argv)
    try:
        report = export_checkpoint(args.src, args.dst, args.dtype, args.max_mb, tuple(args.include))
    except (OSError, ValueError) as exc:
        print(f"dtvla-export-checkpoint: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
