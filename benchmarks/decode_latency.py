"""Decode latency of the hybrid decoder: every variant on the same model in one run, medians and ratios.

  kv_reuse_vs_recompute  action pass on top of the CoT KV cache (engine, `full` mode) vs upstream-style
                         recompute: re-encode images and run the whole [prefix, CoT, block] with full-vocab logits
  action_pass_vs_ar      the parallel 73-token action pass vs `ar_actions` (70 tokens one by one), both
                         measured after the same prefill
  masked_vs_full         whole `masked` prediction vs whole `full` prediction with a 64-token CoT

Usage: python benchmarks/decode_latency.py --preset {tiny,small} --json [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dtvla_policy.inference import DecodeConfig, Observation, PolicyEngine
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.model.sequence import ACTION_BLOCK_LEN, action_block_ids
from dtvla_policy.model.tiny_checkpoint import PRESETS, write_tiny_checkpoint

COT_TOKENS = 64
TASK = "pick up the black bowl between the plate and the ramekin and place it on the plate"


@torch.inference_mode()
def upstream_recompute_ms(engine: PolicyEngine, obs: Observation, body: list[int]) -> float:
    """Upstream's action pass: images encoded again, whole sequence forward, logits over the whole vocabulary.

    `body` is the CoT segment as fed (`Prediction.cot_segment_ids`)."""
    t0 = time.perf_counter()
    batch = engine.prepare([obs])
    prefix = batch.prefixes[0]
    ids = torch.tensor([prefix + body + action_block_ids(engine.ids)])
    segments = torch.tensor(
        [[Segment.PREFIX] * len(prefix) + [Segment.COT] * len(body) + [Segment.ACTION] * ACTION_BLOCK_LEN]
    )
    logits = engine.model.hybrid_forward(ids, segments, batch.image_features).logits
    action_logits = logits[0, -ACTION_BLOCK_LEN:][:70, engine.ids.action_begin : engine.ids.action_end_id + 1]
    action_logits.argmax(-1)
    return (time.perf_counter() - t0) * 1e3


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run(preset: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tiny_checkpoint(Path(tmp) / preset, preset=preset)
        engine = PolicyEngine.from_checkpoint(path, decode=DecodeConfig(max_cot_tokens=COT_TOKENS))
    rng = np.random.default_rng(0)
    obs = Observation(rng.integers(0, 256, (224, 224, 3), np.uint8), rng.integers(0, 256, (224, 224, 3), np.uint8),
                      TASK)
    samples: dict[str, list[float]] = {k: [] for k in
                                       ("full_total", "masked_total", "kv_reuse_action_pass", "recompute_action_pass",
                                        "ar_actions_decode", "vision", "prefill", "cot_per_token")}
    engine.predict(obs.agentview, obs.wrist, obs.task, "masked")  # warm-up (allocator, thread pool)
    for _ in range(repeats):  # interleaved, so machine-load drift hits every variant alike
        full = engine.predict(obs.agentview, obs.wrist, obs.task, "full")
        masked = engine.predict(obs.agentview, obs.wrist, obs.task, "masked")
        ar = engine.predict(obs.agentview, obs.wrist, obs.task, "ar_actions")
        recompute = upstream_recompute_ms(engine, obs, full.cot_segment_ids)
        samples["full_total"].append(full.timings["total_ms"])
        samples["masked_total"].append(masked.timings["total_ms"])
        samples["kv_reuse_action_pass"].append(full.timings["action_ms"])
        samples["recompute_action_pass"].append(recompute)
        samples["ar_actions_decode"].append(ar.timings["action_ms"])
        samples["vision"].append(full.timings["vision_ms"])
        samples["prefill"].append(full.timings["prefill_ms"])
        samples["cot_per_token"].append(full.timings["cot_ms"] / len(full.cot_segment_ids))
        assert full.cot_truncated and len(full.cot_segment_ids) > COT_TOKENS  # a random model runs to the cap
    ms = {k: median(v) for k, v in samples.items()}
    return {
        "preset": preset,
        "params_m": round(engine.model.num_parameters() / 1e6, 1),
        "prefix_tokens": len(engine.prepare([obs]).prefixes[0]),
        "cot_tokens": COT_TOKENS,
        "repeats": repeats,
        "threads": threads,
        "ms": ms,
        "kv_reuse_vs_recompute": round(ms["kv_reuse_action_pass"] / ms["recompute_action_pass"], 4),
        "action_pass_vs_ar": round(ms["kv_reuse_action_pass"] / ms["ar_actions_decode"], 4),
        "masked_vs_full": round(ms["masked_total"] / ms["full_total"], 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 (tiny), 5 (small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default prints it indented)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.preset == "tiny" else 5)
    result = run(args.preset, repeats, args.threads)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
