"""Golden checks against a released DeepThinkVLA checkpoint, and the same machinery on the tiny checkpoint.

With `DTVLA_RELEASED_CHECKPOINT=DIR` (e.g. a local copy of yinchenghust/deepthinkvla_libero_cot_sft):
  * the prefix ids equal transformers' `PaliGemmaProcessor` output built from the checkpoint's tokenizer (image
    slots, `<bos>`, the byte-exact instruction, the ';' '\\n' boundary ids [235289, 108] at the end), and the
    pixel values equal the processor's;
  * `masked` and `full` predictions on the stored LIBERO frames (`tests/fixtures/golden/frames`) equal the
    recorded fixture, run in float32 on the CPU. Without a fixture the test fails; `DTVLA_WRITE_GOLDEN=1` records
    one (and skips, saying so: a fresh recording proves nothing until it is reviewed and committed).
The prompt/processor check and the record-compare round trip always run on the tiny checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, PaliGemmaProcessor, SiglipImageProcessor

from dtvla_policy.inference import DecodeConfig, Observation, PolicyEngine
from dtvla_policy.model.image_preprocessing import to_pixel_values

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
FIXTURE = GOLDEN / "released_predictions.json"
MODES = ("masked", "full")
# Upstream's instruction, typed out here rather than imported, so a changed constant cannot pass by itself.
UPSTREAM_INSTRUCTION = (
    "First output the thinking process in <think></think> tags and then output the final action in "
    "<action></action>."
)
BOUNDARY_IDS = [235289, 108]  # ';' '\n' in the released tokenizer: upstream finds the prefix end by this pair
TASKS = ("pick up the black bowl between the plate and the ramekin and place it on the plate",
         "Open_the TOP drawer  and put the bowl inside ", " turn on the stove")


def stored_frames() -> list[dict]:
    """[{name, task, agentview, wrist}] of the committed LIBERO frames (224 px, upright)."""
    frames = json.loads((GOLDEN / "frames.json").read_text())
    for frame in frames:
        for camera in ("agentview", "wrist"):
            frame[camera] = np.asarray(Image.open(GOLDEN / "frames" / f"{frame['name']}_{camera}.png").convert("RGB"))
    return frames


def upstream_inputs(checkpoint: Path, engine: PolicyEngine, task: str, images: list[np.ndarray]) -> dict:
    """input_ids and pixel_values as upstream's processor makes them from the checkpoint's own tokenizer."""
    size = engine.ckpt.image_size
    image_processor = SiglipImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                           image_std=[0.5] * 3, resample=Image.Resampling.BICUBIC)
    image_processor.image_seq_length = engine.ckpt.tokens_per_image
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)  # fresh: the processor edits it
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = "<image>" * len(images) + f"{UPSTREAM_INSTRUCTION}Task: {task.lower().replace('_', ' ')};"
    out = processor(images=[images], text=[text], return_tensors="pt")
    return {"input_ids": out["input_ids"][0].tolist(), "pixel_values": out["pixel_values"]}


def check_prompt_against_processor(checkpoint: Path, engine: PolicyEngine, frame: dict, task: str) -> list[int]:
    """Assert the engine's prefix ids and pixel values equal the processor's; returns the prefix ids."""
    images = [frame["agentview"], frame["wrist"]]
    expected = upstream_inputs(checkpoint, engine, task, images)
    batch = engine.prepare([Observation(frame["agentview"], frame["wrist"], task)])
    prefix = batch.prefixes[0]
    assert prefix == expected["input_ids"]
    n_slots = len(images) * engine.ckpt.tokens_per_image
    assert prefix[:n_slots] == [engine.ids.image] * n_slots and prefix[n_slots] == engine.ids.bos
    pixels = torch.stack([to_pixel_values(image, engine.ckpt.image_size) for image in images])
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=0, rtol=0)
    return prefix


def record(engine: PolicyEngine, frames: list[dict], decode: DecodeConfig) -> dict:
    """{frame name: {mode: {cot_segment_ids, cot_truncated, action_tokens, cot}}}; `cot` is for review only."""
    results = {}
    for frame in frames:
        results[frame["name"]] = {}
        for mode in MODES:
            p = engine.predict(frame["agentview"], frame["wrist"], frame["task"], mode, decode)
            results[frame["name"]][mode] = {"cot_segment_ids": p.cot_segment_ids, "cot_truncated": p.cot_truncated,
                                            "action_tokens": p.action_tokens.tolist(), "cot": p.cot}
    return results


def differences(recorded: dict, expected: dict) -> list[str]:
    """Human-readable mismatches between two recordings (empty when they agree token for token)."""
    problems = []
    for name in sorted(set(recorded) | set(expected)):
        for mode in MODES:
            got, want = recorded.get(name, {}).get(mode), expected.get(name, {}).get(mode)
            if got is None or want is None:
                problems.append(f"{name}/{mode}: missing in {'recording' if got is None else 'fixture'}")
                continue
            for key in ("cot_segment_ids", "cot_truncated", "action_tokens"):
                if got[key] != want[key]:
                    detail = ""
                    if isinstance(want[key], list):
                        first = next((i for i, (a, b) in enumerate(zip(got[key], want[key], strict=False)) if a != b),
                                     min(len(got[key]), len(want[key])))
                        detail = f" (first difference at index {first}; lengths {len(got[key])} vs {len(want[key])})"
                    problems.append(f"{name}/{mode}: {key} differs{detail}")
    return problems


def fingerprint(checkpoint: Path) -> dict:
    """Which checkpoint a fixture belongs to: hashes of the small files, names and sizes of the weight files."""
    small = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(checkpoint.glob("*.json")) if p.stat().st_size < 50_000_000}
    weights = {p.name: p.stat().st_size for p in sorted(checkpoint.glob("*.safetensors"))}
    return {"files": small, "weights": weights}


# ---------------------------------------------------------------------------------------------- tiny checkpoint
@pytest.mark.parametrize("task", TASKS)
def test_prompt_ids_equal_the_paligemma_processor_on_the_tiny_checkpoint(tiny_checkpoint, tiny_engine, task):
    prefix = check_prompt_against_processor(tiny_checkpoint, tiny_engine, stored_frames()[0], task)
    # the tiny BPE may merge ';' with the word before it; the released ids are checked in the test below
    tokenizer = tiny_engine.ckpt.tokenizer
    assert tokenizer.decode(prefix[-1:]) == "\n" and tokenizer.decode(prefix[-2:]).endswith(";\n")


def test_golden_record_and_compare_round_trip_on_the_tiny_checkpoint(tiny_engine, tmp_path):
    frames = stored_frames()[:1]
    decode = DecodeConfig(max_cot_tokens=8)  # a random model never closes its CoT: keep it short
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(record(tiny_engine, frames, decode)))
    expected = json.loads(path.read_text())
    assert differences(record(tiny_engine, frames, decode), expected) == []
    name = frames[0]["name"]
    expected[name]["full"]["action_tokens"][5] += 1
    expected[name]["masked"]["cot_segment_ids"].append(7)
    assert differences(record(tiny_engine, frames, decode), expected) == [
        f"{name}/masked: cot_segment_ids differs (first difference at index 2; lengths 2 vs 3)",
        f"{name}/full: action_tokens differs (first difference at index 5; lengths 70 vs 70)",
    ]


# ---------------------------------------------------------------------------------------------- released checkpoint
@pytest.fixture(scope="module")
def released_checkpoint() -> Path:
    value = os.environ.get("DTVLA_RELEASED_CHECKPOINT")
    if not value:
        pytest.skip("set DTVLA_RELEASED_CHECKPOINT=DIR (a released DeepThinkVLA checkpoint) to run the golden tests")
    return Path(value).expanduser().resolve()


@pytest.fixture(scope="module")
def released_engine(released_checkpoint: Path) -> PolicyEngine:
    return PolicyEngine.from_checkpoint(released_checkpoint, device="cpu", dtype="float32")


@pytest.mark.released_checkpoint
@pytest.mark.parametrize("task", TASKS)
def test_released_prompt_ids_equal_the_paligemma_processor(released_checkpoint, released_engine, task):
    prefix = check_prompt_against_processor(released_checkpoint, released_engine, stored_frames()[0], task)
    assert len(prefix) > 2 * 256 + 1 and prefix[-2:] == BOUNDARY_IDS


@pytest.mark.released_checkpoint
def test_released_predictions_equal_the_golden_fixture(released_checkpoint, released_engine):
    recorded = record(released_engine, stored_frames(), DecodeConfig())
    if not FIXTURE.is_file():
        if os.environ.get("DTVLA_WRITE_GOLDEN") != "1":
            pytest.fail(f"no golden fixture at {FIXTURE}; run once with DTVLA_WRITE_GOLDEN=1 to record it, review "
                        "the CoTs in it and commit it")
        FIXTURE.write_text(json.dumps({"checkpoint": fingerprint(released_checkpoint), "dtype": "float32",
                                       "device": "cpu", "predictions": recorded}, indent=1) + "\n")
        pytest.skip(f"recorded {FIXTURE} from {released_checkpoint}: review it, commit it, and run again to compare")
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["checkpoint"] == fingerprint(released_checkpoint), (
        f"{FIXTURE} was recorded from another checkpoint; delete it and re-record with DTVLA_WRITE_GOLDEN=1"
    )
    assert differences(recorded, fixture["predictions"]) == []
