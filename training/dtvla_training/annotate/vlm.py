"""`vlm`: a vision-language model behind an OpenAI-compatible chat endpoint describes a frame from its two images.

The model gets the task, where the frame sits in the episode and why it is a key frame, the agentview and wrist
images (base64 data URLs), and the style rules of upstream's reasoning; it answers one JSON object
{"scene", "progress", "next_step", "phase", "confidence"}. Answers that parse are cached on disk (`response_cache`);
an answer that does not parse becomes a failed annotation (empty text, `error` set), which the checks reject and the
review queue lists. A request that fails for good (after the client's retries) stops the run: the cache keeps every
answer so far, so the rerun resumes where it stopped.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from dtvla_sim_bridge.sim.scene import PHASES
from dtvla_training.annotate.annotator import Annotation, Annotator
from dtvla_training.annotate.chat_client import ChatClient
from dtvla_training.annotate.checks import IMPERATIVE_VERBS
from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import Segmentation
from dtvla_training.annotate.response_cache import ResponseCache, cache_key

SYSTEM_PROMPT = (
    "You annotate frames of robot manipulation demonstrations with the short reasoning a robot policy should think "
    "before acting. You see the scene camera image first and the wrist camera image second. Answer with ONE JSON "
    "object and nothing else, with these keys:\n"
    '"scene": one sentence on the gripper state (open, closed, holding what) and the objects relevant to the task, '
    'each with a coarse location in parentheses (left, center or right, as seen from the robot), e.g. "The gripper '
    'is open above the black bowl (center); the plate (right) is empty.";\n'
    '"progress": one sentence on which sub-goal of the task is under way and what is already done;\n'
    '"next_step": ONE imperative sentence, the next thing to do, starting with one of these verbs: '
    + ", ".join(v.capitalize() for v in IMPERATIVE_VERBS) + ' (e.g. "Grasp the black bowl.");\n'
    '"phase": the phase of the task at this frame, one of: ' + ", ".join(PHASES) + ";\n"
    '"confidence": a number from 0 to 1, how sure you are of this description.'
)
ANSWER_KEYS = ("scene", "progress", "next_step")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class VlmAnnotator(Annotator):
    """Asks `client` about each frame it is given (with `propagate`: only key frames)."""

    name = "vlm"

    def __init__(self, client: ChatClient, cache: ResponseCache | None = None) -> None:
        self.client = client
        self.cache = cache

    def annotate_frame(self, episode: Episode, frame: int, segmentation: Segmentation) -> Annotation:
        prompt = frame_prompt(episode, frame, segmentation)
        images = episode.images(frame)
        key = cache_key(self.client.settings.model, f"{SYSTEM_PROMPT}\n{prompt}", images)
        reply = self.cache.get(key) if self.cache is not None else None
        cached = reply is not None
        if reply is None:
            reply = self.client.complete(chat_messages(prompt, images))
        annotation = parse_answer(reply, self.name)
        if annotation.error is None and self.cache is not None and not cached:
            self.cache.put(key, reply)
        return annotation

    def stats(self) -> dict[str, int]:
        return {"requests": self.client.requests, "retries": self.client.retries,
                "cache_hits": self.cache.hits if self.cache is not None else 0}


def frame_prompt(episode: Episode, frame: int, segmentation: Segmentation) -> str:
    key_frames = segmentation.key_frames
    key = next((k for k in key_frames if k.frame == frame), None)
    where = f"Frame {frame} of {episode.length}"
    if key is not None:
        where += (f" (key frame {key_frames.index(key) + 1} of {len(key_frames)}; a key frame because of: "
                  f"{', '.join(r.replace('_', ' ') for r in key.reasons)})")
    return f"Task: {episode.task}\n{where}.\nAnswer with the JSON object only."


def chat_messages(prompt: str, images: tuple[bytes, ...]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    content += [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def data_url(image: bytes) -> str:
    """A base64 data URL of PNG or JPEG bytes; other formats are refused (endpoints accept these two)."""
    if image.startswith(b"\x89PNG"):
        mime = "image/png"
    elif image.startswith(b"\xff\xd8"):
        mime = "image/jpeg"
    else:
        raise ValueError(f"image is neither PNG nor JPEG (starts with {image[:8]!r}); re-encode the dataset's images")
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


def parse_answer(reply: str, source: str) -> Annotation:
    """The annotation in a model's reply, or a failed one saying what is wrong with the reply."""
    try:
        answer = json.loads(_FENCE.sub("", reply.strip()))
    except json.JSONDecodeError:
        return Annotation.failed(source, f"answer is not JSON: {reply[:200]!r}")
    if not isinstance(answer, dict):
        return Annotation.failed(source, f"answer is a JSON {type(answer).__name__}, expected an object")
    missing = [k for k in ANSWER_KEYS if not isinstance(answer.get(k), str)]
    if missing:
        return Annotation.failed(source, f"answer lacks text for {missing}: {reply[:200]!r}")
    phase = answer.get("phase")
    if phase not in PHASES:
        return Annotation.failed(source, f"answer's phase {phase!r} is not one of {', '.join(PHASES)}")
    confidence = answer.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        return Annotation.failed(source, f"answer's confidence {confidence!r} is not a number in [0, 1]")
    return Annotation(scene=answer["scene"], progress=answer["progress"], next_step=answer["next_step"],
                      phase=phase, source=source, confidence=float(confidence))
