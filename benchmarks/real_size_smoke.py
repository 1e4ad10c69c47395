"""Real-size smoke: the released 2.9B architecture (random weights) through `masked` and a 16-token `full`.

Proves the engine runs the real dimensions (PaliGemma-3B: Gemma-2B with 1 KV head, SigLIP-So400m/14 at 224,
vocabulary 257157) and reports what it costs on this machine: per-stage engine timings and peak RSS, in bfloat16
and in float32. Each dtype runs in its own subprocess, so its peak RSS is its own. The model is built directly in
the target dtype (never a float32 copy first). No weights are downloaded: the numbers say nothing about quality.

Usage: python benchmarks/real_size_smoke.py --json [--threads N] [--dtypes bfloat16 float32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

COT_CAP = 16
TASK = "pick up the black bowl between the plate and the ramekin and place it on the plate"
DTYPES = ("bfloat16", "float32")


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_one(dtype_name: str, threads: int) -> dict:
    """Build the 2.9B model in `dtype_name`, run masked then full once each; timings are the engine's (ms)."""
    import numpy as np
    import torch

    from dtvla_policy.inference import DecodeConfig, PolicyEngine
    from dtvla_policy.model import Checkpoint, DeepThinkVLA, TokenIds
    from dtvla_policy.model.sequence import prefix_ids
    from dtvla_policy.model.tiny_checkpoint import DEMO_NORM_STATS, PRESETS, build_config, build_tokenizer

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    ids = TokenIds()
    rss_start = rss_mb()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = DeepThinkVLA._from_config(build_config(PRESETS["released"], ids), dtype=dtype).eval()
    checkpoint = Checkpoint(path=Path("(random init, in memory)"), model=model, tokenizer=build_tokenizer(),
                            normalizer=DEMO_NORM_STATS, token_ids=ids)
    engine = PolicyEngine(checkpoint, DecodeConfig(max_cot_tokens=COT_CAP))
    build_s = time.perf_counter() - t0
    rss_model = rss_mb()
    rng = np.random.default_rng(0)
    agentview, wrist = (rng.integers(0, 256, (224, 224, 3), np.uint8) for _ in range(2))
    stages = {}
    for mode in ("masked", "full"):
        prediction = engine.predict(agentview, wrist, TASK, mode)
        if not np.all(np.isfinite(prediction.actions)) or prediction.actions.shape != (10, 7):
            raise RuntimeError(f"{mode}: bad actions {prediction.actions}")
        stages[mode] = {k.removesuffix("_ms"): round(v, 1) for k, v in prediction.timings.items()}
        if mode == "full":
            stages[mode]["cot_tokens_fed"] = len(prediction.cot_segment_ids)
            stages[mode]["cot_per_token"] = round(prediction.timings["cot_ms"] / len(prediction.cot_segment_ids), 1)
    return {
        "dtype": dtype_name,
        "params_b": round(model.num_parameters() / 1e9, 3),
        "prefix_tokens": len(prefix_ids(checkpoint.tokenizer, ids, TASK, 2, checkpoint.tokens_per_image)),
        "build_s": round(build_s, 1),
        "rss_before_build_mb": rss_start,
        "rss_after_build_mb": rss_model,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ms": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default prints it indented)")
    parser.add_argument("--one", choices=DTYPES, help=argparse.SUPPRESS)  # internal: the per-dtype subprocess
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.threads)))
        return 0
    runs = {}
    for dtype in args.dtypes:
        out = subprocess.run([sys.executable, __file__, "--one", dtype, "--threads", str(args.threads)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            runs[dtype] = {"error": f"exit {out.returncode}", "stderr_tail": out.stderr[-2000:]}
            continue
        runs[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    import torch  # only for the version: the measuring happens in the subprocesses

    result = {
        "benchmark": "real_size_smoke",
        "architecture": "PaliGemma-3B (Gemma-2B 18x2048, 8 heads, 1 KV head, MLP 16384; SigLIP 27x1152, 16 heads, "
                        "patch 14, 224 px), vocab 257157, random weights",
        "cot_cap": COT_CAP,
        "threads": args.threads,
        "runs": runs,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
                    "cores": len(os.sched_getaffinity(0))},
    }
    if all("ms" in runs.get(d, {}) for d in DTYPES):
        bf16, fp32 = runs["bfloat16"]["ms"], runs["float32"]["ms"]
        result["bf16_vs_fp32_total"] = {mode: round(bf16[mode]["total"] / fp32[mode]["total"], 3)
                                        for mode in ("masked", "full")}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
