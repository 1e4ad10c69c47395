"""PolicyEngine behaviour: modes, outputs, bad input, CLI."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dtvla_policy.inference import NonFiniteOutputError
from dtvla_policy.inference.cli import build_parser, read_rgb
from dtvla_policy.inference.engine import DecodeConfig, Mode, Observation, PolicyEngine
from dtvla_policy.model.conventions import THINK_INSTRUCTION
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.protocol import COT_CAP_EVAL
from tests.fixtures.checkpoints import camera_image, checkpoint_with_edited_weight

TASK = "pick up the black bowl and place it on the plate"
FINAL_NORM = "model.language_model.model.norm.weight"


@pytest.mark.parametrize("mode", [m.value for m in Mode])
def test_every_mode_returns_a_finite_chunk(tiny_engine, mode):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode=mode)
    assert prediction.actions.shape == (10, 7) and prediction.actions.dtype == np.float32
    assert np.all(np.isfinite(prediction.actions))
    assert prediction.action_tokens.shape == (70,)
    assert np.all(tiny_engine.codec.is_action_token(prediction.action_tokens))
    assert prediction.mode == mode
    assert prediction.timings["total_ms"] > 0 and prediction.timings["action_ms"] > 0
    if mode in ("full", "sample"):
        assert "prefill_ms" in prediction.timings and "cot_ms" in prediction.timings


def test_unnormalised_actions_follow_the_norm_stats(tiny_engine):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode="masked")
    norm = tiny_engine.ckpt.normalizer
    assert np.all(prediction.actions[:, :6] >= norm.q01[:6] - 1e-5)
    assert np.all(prediction.actions[:, :6] <= norm.q99[:6] + 1e-5)
    assert np.all(np.abs(prediction.actions[:, 6]) <= 1.0)  # gripper stays raw in [-1, 1]


def test_cot_cap_closes_the_thought_and_flags_it(tiny_engine, caplog):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "full", DecodeConfig(max_cot_tokens=4))
    assert prediction.cot_truncated  # a random model never writes </think><action> on its own
    # 4 tokens written by the model, then `</think>` (and `<action>`, the block's first token) forced beyond the cap
    assert prediction.cot_tokens == 4
    assert prediction.cot_segment_ids == [*prediction.cot_token_ids, tiny_engine.ids.think_end]
    assert "max_cot_tokens=4" in caplog.text
    assert np.all(np.isfinite(prediction.actions))


def test_a_prefilled_think_counts_against_the_cap(tiny_engine):
    config = DecodeConfig(max_cot_tokens=4, force_think_start=True)
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "full", config)
    ids = tiny_engine.ids
    assert prediction.cot_truncated and prediction.cot_tokens == 3
    assert prediction.cot_segment_ids == [ids.think_start, *prediction.cot_token_ids, ids.think_end]


def prefix_and_features(engine, obs: Observation) -> tuple[list[int], torch.Tensor]:
    batch = engine.prepare([obs])
    return batch.prefixes[0], batch.image_features


@torch.no_grad()  # not inference_mode: callers edit the logits in place
def next_token_logits(engine, prefix: list[int], features: torch.Tensor, cot: list[int]) -> torch.Tensor:
    """(len(cot) + 1, vocab) fp32 logits from ONE uncached forward over [prefix, cot]: no engine decoding code."""
    ids = torch.tensor([prefix + cot])
    segments = torch.tensor([[Segment.PREFIX] * len(prefix) + [Segment.COT] * len(cot)])
    logits = engine.model.hybrid_forward(ids, segments, features).logits[0]
    return logits[len(prefix) - 1 :].float()


def independent_greedy(engine, obs: Observation, head: list[int], banned: set[int], extra_after_think: set[int],
                       steps: int) -> list[int]:
    """Greedy CoT the slow, obvious way: a full forward per token, argmax with only `banned` ids excluded."""
    prefix, features = prefix_and_features(engine, obs)
    cot = list(head)
    for _ in range(steps):
        logits = next_token_logits(engine, prefix, features, cot)[-1]
        excluded = banned | (extra_after_think if engine.ids.think_start in cot else set())
        logits[sorted(excluded)] = float("-inf")
        cot.append(int(logits.argmax()))
    return cot


def upstream_ban(ids) -> set[int]:
    return set(range(ids.action_begin, ids.action_end_id + 1)) | {ids.eos}


def test_default_full_mode_lets_the_model_write_think(tiny_engine):
    """Upstream prefills only the prefix: the first CoT token is the prefix's own greedy choice, not `<think>`."""
    obs = Observation(camera_image(0), camera_image(1), TASK)
    prediction = tiny_engine.predict(obs.agentview, obs.wrist, obs.task, "full", DecodeConfig(max_cot_tokens=6))
    expected = independent_greedy(tiny_engine, obs, [], upstream_ban(tiny_engine.ids), set(), 6)
    assert expected[0] != tiny_engine.ids.think_start  # this random model does not open with `<think>` ...
    assert prediction.cot_segment_ids[:6] == expected  # ... so a prefilled `<think>` would show here


def test_opt_in_flags_reproduce_the_former_decoding(tiny_engine):
    """force_think_start + ban_extra_specials: `<think>` prefilled; pad, bos, `<image>`, `</action>` and a second
    `<think>` banned on top of upstream's bans."""
    ids = tiny_engine.ids
    obs = Observation(camera_image(0), camera_image(1), TASK)
    config = DecodeConfig(max_cot_tokens=6, force_think_start=True, ban_extra_specials=True)
    assert config.deviations() == {"max_cot_tokens": 6, "force_think_start": True, "ban_extra_specials": True}
    prediction = tiny_engine.predict(obs.agentview, obs.wrist, obs.task, "full", config)
    former_ban = upstream_ban(ids) | {ids.pad, ids.bos, ids.image, ids.action_end}
    expected = independent_greedy(tiny_engine, obs, [ids.think_start], former_ban, {ids.think_start}, 5)
    assert prediction.cot_segment_ids[:6] == expected
    assert "<think>" not in prediction.cot and "</think>" not in prediction.cot


def test_cot_bans_are_upstreams_unless_opted_in(tiny_engine):
    ids = tiny_engine.ids

    def banned(config: DecodeConfig, think_written: bool) -> set[int]:
        return set(torch.nonzero(tiny_engine.cot_ban(config, think_written)).flatten().tolist())

    upstream = upstream_ban(ids)
    assert banned(DecodeConfig(), False) == banned(DecodeConfig(), True) == upstream
    extra = DecodeConfig(ban_extra_specials=True)
    assert banned(extra, False) == upstream | {ids.pad, ids.bos, ids.image, ids.action_end}
    assert banned(extra, True) == banned(extra, False) | {ids.think_start}


@pytest.mark.parametrize("force_think_start", [False, True])
def test_sample_log_probs_are_those_of_the_tokens_fed(tiny_engine, force_think_start):
    """cot_logprobs[i] = log p(token i | prefix, tokens before), tokens = cot_segment_ids then `<action>`,
    checked against one uncached forward; with the prefill, `<think>` gets its log-prob too."""
    ids = tiny_engine.ids
    config = DecodeConfig(max_cot_tokens=5, seed=3, cot_temperature=0.7, force_think_start=force_think_start)
    obs = Observation(camera_image(0), camera_image(1), TASK)
    prediction = tiny_engine.predict(obs.agentview, obs.wrist, obs.task, "sample", config)
    fed = [*prediction.cot_segment_ids, ids.action_start]
    assert prediction.cot_logprobs.shape == (len(fed),)
    assert (prediction.cot_segment_ids[0] == ids.think_start) == force_think_start
    prefix, features = prefix_and_features(tiny_engine, obs)
    logits = next_token_logits(tiny_engine, prefix, features, prediction.cot_segment_ids)
    logits[:, sorted(upstream_ban(ids))] = float("-inf")
    expected = torch.log_softmax(logits / config.cot_temperature, -1)[torch.arange(len(fed)), fed]
    np.testing.assert_allclose(prediction.cot_logprobs, expected.numpy(), atol=1e-4)


def test_sample_mode_returns_log_probs_and_is_seeded(tiny_engine):
    config = DecodeConfig(max_cot_tokens=5, seed=3)
    a = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "sample", config)
    b = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "sample", config)
    assert a.action_logprobs.shape == (70,) and np.all(a.action_logprobs <= 0)
    np.testing.assert_array_equal(a.action_tokens, b.action_tokens)
    assert a.cot_segment_ids == b.cot_segment_ids
    np.testing.assert_array_equal(a.cot_logprobs, b.cot_logprobs)


SCORE_CONFIGS = [DecodeConfig(max_cot_tokens=5, cot_temperature=0.7, action_temperature=1.6),
                 DecodeConfig(max_cot_tokens=4, force_think_start=True, ban_extra_specials=True)]


@pytest.mark.parametrize("config", SCORE_CONFIGS, ids=["upstream", "opt_in_flags"])
def test_teacher_forced_scores_equal_the_sampling_log_probs(tiny_engine, config):
    """GRPO's ratio sets `score` (one uncached pass, differentiable) against what `sample` recorded (KV cache, then
    the cached action pass): same weights, same values, for the CoT and the actions of every row of a batch whose
    prompts differ in length."""
    observations = [Observation(camera_image(0), camera_image(1), TASK),
                    Observation(camera_image(2), camera_image(3), "put the bowl on the stove")]
    predictions = tiny_engine.predict_batch(observations, "sample", config, seeds=[5, 6])
    with torch.no_grad():
        scores = tiny_engine.score(observations, [p.cot_segment_ids for p in predictions],
                                   [p.action_tokens for p in predictions], config, entropy=True)
    for row, prediction in enumerate(predictions):
        np.testing.assert_allclose(scores.cot_logprobs[row].numpy(), prediction.cot_logprobs, atol=1e-4)
        np.testing.assert_allclose(scores.action_logprobs[row].numpy(), prediction.action_logprobs, atol=1e-4)
        assert scores.cot_entropy[row].shape == scores.cot_logprobs[row].shape
        assert torch.all(scores.cot_entropy[row] >= 0) and torch.all(scores.action_entropy[row] >= 0)
    assert scores.action_entropy.shape == (2, 70)


def test_scores_of_a_row_do_not_depend_on_its_batch(tiny_engine):
    """Rows of different CoT lengths (left padding differs) score as they do alone."""
    ids = tiny_engine.ids
    observations = [Observation(camera_image(0), camera_image(1), TASK), Observation(camera_image(2), camera_image(3),
                                                                                      "open the drawer")]
    segments = [[ids.think_start, 300, 301, ids.think_end], [ids.think_start, 400, ids.think_end]]
    actions = np.stack([ids.action_begin + np.arange(70), ids.action_end_id - np.arange(70)])
    with torch.no_grad():
        together = tiny_engine.score(observations, segments, actions)
        for row in range(2):
            alone = tiny_engine.score(observations[row : row + 1], segments[row : row + 1], actions[row : row + 1])
            torch.testing.assert_close(together.cot_logprobs[row], alone.cot_logprobs[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(together.action_logprobs[row], alone.action_logprobs[0], atol=1e-5, rtol=0)
    assert [len(lp) for lp in together.cot_logprobs] == [5, 4]  # the segment, then `<action>`


def test_per_row_seeds_sample_the_same_alone_and_in_a_batch(tiny_engine):
    config = DecodeConfig(max_cot_tokens=5)
    first = Observation(camera_image(0), camera_image(1), TASK)
    other = Observation(camera_image(4), camera_image(5), "open the drawer")
    alone = tiny_engine.predict_batch([first], "sample", config, seeds=[11])[0]
    batched = tiny_engine.predict_batch([other, first], "sample", config, seeds=[12, 11])[1]
    assert alone.cot_segment_ids == batched.cot_segment_ids
    np.testing.assert_array_equal(alone.action_tokens, batched.action_tokens)
    with pytest.raises(ValueError, match="1 seeds for 2 observations"):
        tiny_engine.predict_batch([other, first], "sample", config, seeds=[12])


def test_random_mode_draws_upstreams_128_ids(tiny_engine):
    """128 ids uniform over [0, 220000), as upstream: reproduced from the same seeded generator."""
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "random", DecodeConfig(seed=1))
    expected = torch.randint(0, 220_000, (128,), generator=torch.Generator().manual_seed(1)).tolist()
    assert prediction.cot_token_ids == expected
    assert prediction.cot_segment_ids == [tiny_engine.ids.think_start, *expected, tiny_engine.ids.think_end]


def test_cot_text_never_shows_tags(tiny_engine):
    ids = tiny_engine.ids
    words = tiny_engine.ckpt.tokenizer("move down and grasp the bowl", add_special_tokens=False)["input_ids"]
    tagged = [ids.think_start, *words, ids.image, ids.think_end, ids.action_start, ids.action_end]
    assert tiny_engine.cot_text(tagged) == tiny_engine.cot_text(words) == "move down and grasp the bowl"


def test_a_nan_weight_raises_instead_of_a_chunk(tiny_checkpoint, tmp_path):
    # One NaN in the final norm makes every logit NaN; argmax would have picked bin 0 (a finite, full-range chunk).
    path = checkpoint_with_edited_weight(tiny_checkpoint, tmp_path / "nan", FINAL_NORM,
                                         lambda w: w.__setitem__(0, float("nan")))
    engine = PolicyEngine.from_checkpoint(path, decode=DecodeConfig(max_cot_tokens=4))
    with pytest.raises(NonFiniteOutputError, match="non-finite logits in the cot stage") as full:
        engine.predict(camera_image(0), camera_image(1), TASK, mode="full")
    assert full.value.stage == "cot" and full.value.rows == [0]
    with pytest.raises(NonFiniteOutputError, match="action stage"):
        engine.predict(camera_image(0), camera_image(1), TASK, mode="masked")
    observations = [Observation(camera_image(i), camera_image(i + 1), TASK) for i in range(2)]
    with pytest.raises(NonFiniteOutputError, match=r"rows \[0, 1\]"):
        engine.predict_batch(observations, mode="masked")


def run_infer(checkpoint, agentview, wrist, task: str | bytes = TASK, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtvla_policy.inference.cli", "--checkpoint", str(checkpoint), "--agentview",
         str(agentview), "--wrist", str(wrist), "--task", task, "--max-cot-tokens", "3", *extra],
        capture_output=True, text=True, errors="replace",
    )


def test_infer_cli_reports_non_finite_outputs(tiny_checkpoint, tmp_path):
    path = checkpoint_with_edited_weight(tiny_checkpoint, tmp_path / "nan", FINAL_NORM,
                                         lambda w: w.__setitem__(0, float("nan")))
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    out = run_infer(path, tmp_path / "a.png", tmp_path / "a.png", TASK, "--mode", "masked")
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1].startswith("dtvla-infer: NonFiniteOutputError: non-finite")
    assert "Traceback" not in out.stderr


def test_eval_batch_policy_names_the_error_per_episode(tiny_checkpoint, tmp_path):
    from dtvla_sim_bridge.eval.config import EvalConfig
    from dtvla_sim_bridge.eval.runner import BatchPolicy
    from dtvla_sim_bridge.eval.worker import PolicyQuery

    path = checkpoint_with_edited_weight(tiny_checkpoint, tmp_path / "nan", FINAL_NORM,
                                         lambda w: w.__setitem__(0, float("nan")))
    config = EvalConfig(checkpoint=path, suite="libero_spatial", tasks=(0,), trials=1, max_steps=1,
                        out=tmp_path / "eval", mode="masked", max_cot_tokens=4)
    replies = BatchPolicy(config)([PolicyQuery(camera_image(0), camera_image(1), TASK, task=0, step=0)] * 2)
    assert [r.actions for r in replies] == [None, None]
    assert all("NonFiniteOutputError" in r.error and "action stage" in r.error for r in replies)


def test_fp16_overflow_raises(tiny_checkpoint, tmp_path):
    # 6e4 is finite in fp16, but the normed hidden states (6e4 x ~1) overflow to inf in fp16 and not in fp32.
    path = checkpoint_with_edited_weight(tiny_checkpoint, tmp_path / "big", FINAL_NORM, lambda w: w.fill_(6e4))
    fp32 = PolicyEngine.from_checkpoint(path, dtype="float32", decode=DecodeConfig(max_cot_tokens=4))
    assert np.all(np.isfinite(fp32.predict(camera_image(0), camera_image(1), TASK, mode="masked").actions))
    fp16 = PolicyEngine.from_checkpoint(path, dtype="float16", decode=DecodeConfig(max_cot_tokens=4))
    for mode in ("masked", "full", "ar_actions"):
        with pytest.raises(NonFiniteOutputError):
            fp16.predict(camera_image(0), camera_image(1), TASK, mode=mode)


@pytest.mark.parametrize(
    ("agentview", "message"),
    [
        (np.zeros((224, 224), np.uint8), "HxWx3"),
        (np.zeros((224, 224, 4), np.uint8), "HxWx3"),
        (np.zeros((224, 224, 3), np.float32), "uint8"),
        (np.zeros((1, 224, 3), np.uint8), "too small"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_images_are_refused(tiny_engine, agentview, message):
    with pytest.raises(ValueError, match=message):
        tiny_engine.predict(agentview, camera_image(1), TASK)


@pytest.mark.parametrize(("task", "message"), [("", "empty"), ("   ", "empty"), ("x" * 600, "more than")])
def test_bad_tasks_are_refused(tiny_engine, task, message):
    with pytest.raises(ValueError, match=message):
        tiny_engine.predict(camera_image(0), camera_image(1), task)


@pytest.mark.parametrize(
    ("task", "token"),
    [("put the bowl <eos> on the plate", "<eos>"), ("<pad>pick up the bowl", "<pad>"),
     ("pick <think>up</think> the bowl", "<think>"), ("stop.</think><action>", "</think>"),
     ("look at the <image> of the bowl", "<image>"), ("PUT THE BOWL <EOS>", "<eos>"), ("a <bos> b", "<bos>")],
)
def test_tasks_holding_special_tokens_are_refused(tiny_engine, task, token):
    with pytest.raises(ValueError, match=f"contains the special token '{token}'.*cannot be typed in a task"):
        tiny_engine.predict(camera_image(0), camera_image(1), task, mode="masked")


def test_angle_brackets_that_are_no_special_token_are_plain_text(tiny_engine):
    task = "put the <red> bowl on the plate, then the think action"
    prefix = tiny_engine.prefix(task)
    text_ids = prefix[prefix.index(tiny_engine.ids.bos) + 1 :]
    instruction = tiny_engine.ckpt.tokenizer(THINK_INSTRUCTION, add_special_tokens=False)["input_ids"]
    specials = set(tiny_engine.ckpt.tokenizer.all_special_ids)
    assert not specials & set(text_ids[len(instruction) :])  # the instruction's own tags are its only specials
    assert np.all(np.isfinite(tiny_engine.predict(camera_image(0), camera_image(1), task, "masked").actions))


def test_unknown_mode_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode="fast")


def test_max_cot_tokens_is_bounded_by_the_model_positions(tiny_engine):
    prefix_len = len(tiny_engine.prefix(TASK))
    bound = 8192 - 1 - prefix_len - 1 - 73  # 1-indexed positions; forced `</think>`; the action block
    assert tiny_engine.max_cot_tokens_allowed(prefix_len) == bound
    for mode in ("full", "sample"):
        with pytest.raises(ValueError, match=f"max_cot_tokens=100000 exceeds the {bound} .* use at most {bound}"):
            tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode, DecodeConfig(max_cot_tokens=100000))


def test_the_bound_is_exact(tiny_checkpoint, tmp_path):
    # A model with few positions: a CoT cap at the bound runs (a random model never closes its CoT, so the
    # longest sequence is reached), one more is refused.
    path = tmp_path / "short"
    shutil.copytree(tiny_checkpoint, path)
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 160
    (path / "config.json").write_text(json.dumps(config))
    engine = PolicyEngine.from_checkpoint(path)
    bound = engine.max_cot_tokens_allowed(len(engine.prefix(TASK)))
    assert 0 < bound < 40
    prediction = engine.predict(camera_image(0), camera_image(1), TASK, "full", DecodeConfig(max_cot_tokens=bound))
    assert prediction.cot_truncated
    longest = len(engine.prefix(TASK)) + len(prediction.cot_segment_ids) + 73
    assert longest == engine.max_positions - 1
    with pytest.raises(ValueError, match=f"use at most {bound}"):
        engine.predict(camera_image(0), camera_image(1), TASK, "full", DecodeConfig(max_cot_tokens=bound + 1))


def test_bad_decode_config_is_refused():
    with pytest.raises(ValueError, match="temperatures"):
        DecodeConfig(cot_temperature=0)
    with pytest.raises(ValueError, match="max_cot_tokens"):
        DecodeConfig(max_cot_tokens=-1)


def test_infer_cli_prints_json(tiny_checkpoint, tmp_path):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    Image.fromarray(camera_image(1, 128)[:, :, 0]).save(tmp_path / "w.png")  # greyscale file: converted
    out = subprocess.run(
        [sys.executable, "-m", "dtvla_policy.inference.cli", "--checkpoint", str(tiny_checkpoint),
         "--agentview", str(tmp_path / "a.png"), "--wrist", str(tmp_path / "w.png"), "--task", TASK,
         "--mode", "full", "--max-cot-tokens", "3"],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(out.stdout)
    assert np.array(result["actions"]).shape == (10, 7)
    assert result["cot_tokens"] == 3 and result["cot_truncated"] is True
    assert result["max_cot_tokens"] == 3 and result["decode_deviations"] == {"max_cot_tokens": 3}
    assert {"vision", "prefill", "cot", "action", "total"} <= set(result["timings_ms"])


def test_infer_cli_defaults_are_upstreams_decoding():
    args = build_parser().parse_args(["--checkpoint", "c", "--agentview", "a", "--wrist", "w", "--task", "t"])
    assert args.max_cot_tokens == COT_CAP_EVAL == 2048
    assert args.mode == "full" and not args.force_think_start and not args.ban_extra_specials
    assert DecodeConfig(max_cot_tokens=args.max_cot_tokens, seed=args.seed).deviations() == {}
    opted = build_parser().parse_args(["--checkpoint", "c", "--agentview", "a", "--wrist", "w", "--task", "t",
                                       "--force-think-start", "--ban-extra-specials", "--mode", "random"])
    assert opted.force_think_start and opted.ban_extra_specials and opted.mode == "random"


def test_infer_cli_refuses_an_unbounded_cot_cap(tiny_checkpoint, tmp_path):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    out = run_infer(tiny_checkpoint, tmp_path / "a.png", tmp_path / "a.png", TASK, "--max-cot-tokens", "100000")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "max_cot_tokens=100000 exceeds" in out.stderr and "use at most" in out.stderr


@pytest.mark.parametrize(
    ("task", "message"),
    [("put the bowl <eos> away", "contains the special token '<eos>'"),
     ("put the bowl \udcff away", "not valid UTF-8")],
)
def test_infer_cli_refuses_bad_task_text(tiny_checkpoint, tmp_path, task, message):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    out = run_infer(tiny_checkpoint, tmp_path / "a.png", tmp_path / "a.png", os.fsencode(task))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert message in out.stderr.strip().splitlines()[-1]


def header_only_png(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels (no pixel data): enough for PIL's bomb check."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def break_norm_stats(text: str):
    return lambda ckpt: (ckpt / "norm_stats.json").write_text(text)


def truncate_weights(ckpt):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize(
    ("breakage", "image", "extra", "message"),
    [
        (break_norm_stats("[0.5, 1.0]"), None, (), "must be a JSON object"),
        (break_norm_stats('{"action": {"q01": [-1e308, 0, 0, 0, 0, 0, 0], "q99": [1e308, 1, 1, 1, 1, 1, 1]}}'),
         None, (), "overflows float64"),
        (truncate_weights, None, (), "not a complete safetensors file"),
        (break_norm_stats('{"action": {"q01": [0, 0, 0, 0, 0, 0, 0], "q99": [1, 1, 1, 1, 1, 1, 1]}}'), "bomb", (),
         "decompression bomb"),
        (None, "float", (), "only float images in [0, 1]"),
        (None, None, ("--device", "tpu"), "unknown device 'tpu'"),
        pytest.param(None, None, ("--device", "cuda"), "no CUDA device", marks=NO_CUDA),
    ],
    ids=["list_norm_stats", "huge_norm_stats", "truncated_weights", "bomb_png", "float_image", "tpu", "cuda"],
)
def test_infer_cli_refuses_bad_inputs_in_one_line(tiny_checkpoint, tmp_path, breakage, image, extra, message):
    checkpoint = tiny_checkpoint
    if breakage is not None:
        checkpoint = tmp_path / "ckpt"
        shutil.copytree(tiny_checkpoint, checkpoint)
        breakage(checkpoint)
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    agentview = tmp_path / "a.png"
    if image == "bomb":
        agentview = tmp_path / "bomb.png"
        header_only_png(agentview, 30000, 30000)
    elif image == "float":
        agentview = tmp_path / "f.tiff"
        Image.fromarray(np.full((64, 64), 3.5, np.float32)).save(agentview)
    out = run_infer(checkpoint, agentview, tmp_path / "a.png", TASK, *extra)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout == "" and message in out.stderr.strip().splitlines()[-1]


def test_infer_reads_16_bit_and_float_images_by_their_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))  # a 16-bit grey gradient
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = read_rgb(str(tmp_path / "g16.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 256, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], np.rint(ramp[0] / 257).astype(np.uint8))  # not 99% saturated
    Image.fromarray(np.tile(np.linspace(0, 1, 100, dtype=np.float32), (8, 1))).save(tmp_path / "f.tiff")
    rgb = read_rgb(str(tmp_path / "f.tiff"))
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and rgb[0, 50, 0] == round(50 / 99 * 255)  # not black


def test_infer_cli_reports_a_bad_checkpoint(tmp_path):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    out = subprocess.run(
        [sys.executable, "-m", "dtvla_policy.inference.cli", "--checkpoint", str(tmp_path / "nope"),
         "--agentview", str(tmp_path / "a.png"), "--wrist", str(tmp_path / "a.png"), "--task", TASK],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "does not exist" in out.stderr
