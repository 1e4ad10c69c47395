"""The vlm annotator against a real chat-completions server on 127.0.0.1: retries, cache, answers, rate limit."""

import base64
import json

import numpy as np
import pyarrow as pa
import pytest

from dtvla_training.annotate.chat_client import ChatClient, ChatError, ChatSettings, RateLimiter
from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import segment_episode
from dtvla_training.annotate.response_cache import ResponseCache
from dtvla_training.annotate.vlm import VlmAnnotator, data_url, parse_answer
from tests.fixtures.chat_server import ChatServer
from tests.fixtures.datasets import png
from tests.fixtures.demo_episodes import pick_and_place

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def episode() -> Episode:
    """The demo pick-and-place with two distinct 8 px camera images per frame."""
    actions, _ = pick_and_place()
    images = [png(np.full((8, 8, 3), f % 256, dtype=np.uint8)) for f in range(len(actions))]
    column = pa.array([{"bytes": b, "path": None} for b in images], IMAGE_TYPE)
    table = pa.table({"action": pa.array(actions.tolist(), pa.list_(pa.float32(), 7)),
                      "observation.images.image": column, "observation.images.wrist_image": column})
    return Episode(index=0, task="pick up the black bowl and place it on the plate", table=table)


def annotator(server: ChatServer, cache_dir, **settings) -> VlmAnnotator:
    chat = ChatSettings.from_env(url=server.url, model="test-vlm", api_key_env="TEST_VLM_KEY",
                                 **{"backoff_s": 0.01, "requests_per_minute": 6000, **settings})
    return VlmAnnotator(ChatClient(chat), ResponseCache(cache_dir) if cache_dir else None)


def test_retries_then_answers_and_a_rerun_hits_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "sk-test")
    data = episode()
    segmentation = segment_episode(data.actions)
    with ChatServer() as server:
        server.script = ["stall", 429, 500]
        first = annotator(server, tmp_path / "cache", timeout_s=0.3)
        annotation = first.annotate_frame(data, 0, segmentation)
        assert first.stats() == {"requests": 4, "retries": 3, "cache_hits": 0}
        assert (annotation.phase, annotation.next_step, annotation.confidence) == ("approach",
                                                                                  "Grasp the black bowl.", 0.3)
        body, headers = server.requests[-1], server.headers[-1]
        assert body["model"] == "test-vlm" and headers["Authorization"] == "Bearer sk-test"
        user = body["messages"][1]["content"]
        assert "Task: pick up the black bowl" in user[0]["text"] and "key frame 1 of" in user[0]["text"]
        agentview_url = user[1]["image_url"]["url"]
        assert agentview_url.startswith("data:image/png;base64,")
        assert base64.b64decode(agentview_url.split(",", 1)[1]) == data.images(0)[0]

        rerun = annotator(server, tmp_path / "cache")
        assert rerun.annotate_frame(data, 0, segmentation) == annotation
        assert len(server.requests) == 4  # nothing asked again
        assert rerun.stats() == {"requests": 0, "retries": 0, "cache_hits": 1}
        rerun.annotate_frame(data, 1, segmentation)  # another image: a new key
        assert len(server.requests) == 5


def test_gives_up_after_the_retries():
    data = episode()
    with ChatServer() as server:
        server.script = [503, 503, 503]
        with pytest.raises(ChatError, match="HTTP 503"):
            annotator(server, None, max_retries=2).annotate_frame(data, 0, segment_episode(data.actions))
        assert len(server.requests) == 3


def test_a_client_error_is_not_retried():
    data = episode()
    with ChatServer() as server:
        server.script = [401]
        with pytest.raises(ChatError, match="HTTP 401"):
            annotator(server, None).annotate_frame(data, 0, segment_episode(data.actions))
        assert len(server.requests) == 1


def test_an_unusable_answer_fails_the_frame_and_is_not_cached(tmp_path):
    data = episode()
    with ChatServer(reply=lambda body: "I think the robot is grasping.") as server:
        vlm = annotator(server, tmp_path / "cache")
        annotation = vlm.annotate_frame(data, 0, segment_episode(data.actions))
        assert annotation.text == "" and "not JSON" in annotation.error
        vlm.annotate_frame(data, 0, segment_episode(data.actions))
        assert len(server.requests) == 2


@pytest.mark.parametrize(("reply", "error"), [
    ('```json\n{"scene": "s", "progress": "p", "next_step": "Lift it.", "phase": "lift", "confidence": 1}\n```', None),
    ('{"scene": "s", "progress": "p", "next_step": "Lift it.", "phase": "fly", "confidence": 1}', "phase 'fly'"),
    ('{"scene": "s", "progress": "p", "next_step": "Lift it.", "phase": "lift", "confidence": 7}', "confidence 7"),
    ('{"scene": "s", "progress": "p", "phase": "lift", "confidence": 1}', "lacks text for ['next_step']"),
    ('["Lift it."]', "JSON list"),
])
def test_answers_are_parsed_strictly(reply, error):
    annotation = parse_answer(reply, "vlm")
    if error is None:
        assert (annotation.error, annotation.text, annotation.phase) == (None, "s p Lift it.", "lift")
    else:
        assert error in annotation.error and annotation.text == ""


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DTVLA_VLM_URL", "https://vlm.example/v1/")
    monkeypatch.setenv("DTVLA_VLM_MODEL", "m")
    monkeypatch.delenv("DTVLA_VLM_API_KEY", raising=False)
    settings = ChatSettings.from_env()
    assert (settings.endpoint, settings.model, settings.api_key) == ("https://vlm.example/v1/chat/completions", "m",
                                                                     None)
    assert ChatSettings.from_env(model="other").model == "other"
    monkeypatch.delenv("DTVLA_VLM_URL")
    with pytest.raises(ValueError, match="DTVLA_VLM_URL"):
        ChatSettings.from_env()


def test_rate_limit_spaces_requests():
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.5, 0.5]


def test_images_must_be_png_or_jpeg():
    with pytest.raises(ValueError, match="neither PNG nor JPEG"):
        data_url(b"GIF89a")
    assert json.dumps(data_url(b"\xff\xd8\xff")).startswith('"data:image/jpeg;base64,')
