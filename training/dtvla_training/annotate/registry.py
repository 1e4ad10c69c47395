"""Annotators by name: the one place `dtvla-annotate --annotator NAME` is resolved."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from dtvla_training.annotate.annotator import Annotator
from dtvla_training.annotate.chat_client import ChatClient, ChatSettings
from dtvla_training.annotate.privileged import PrivilegedAnnotator
from dtvla_training.annotate.propagate import PropagateAnnotator
from dtvla_training.annotate.response_cache import ResponseCache
from dtvla_training.annotate.scene_text import LocationFrame
from dtvla_training.annotate.vlm import VlmAnnotator

KEY_FRAME_ANNOTATORS = (PrivilegedAnnotator.name, VlmAnnotator.name)  # describe any frame they are asked about
ANNOTATORS = (*KEY_FRAME_ANNOTATORS, PropagateAnnotator.name)


@dataclass(frozen=True)
class AnnotatorOptions:
    """What the annotators need; `chat` only for `vlm`."""

    key_frame_annotator: str = PrivilegedAnnotator.name  # the source of `propagate`
    locations: LocationFrame = field(default_factory=LocationFrame)
    chat: ChatSettings | None = None
    cache_dir: Path | None = None  # VLM answer cache; None: no cache


def uses_vlm(name: str, options: AnnotatorOptions) -> bool:
    """Whether building `name` needs the VLM endpoint (so the CLI reads its settings only then)."""
    return VlmAnnotator.name in (name, options.key_frame_annotator if name == PropagateAnnotator.name else None)


def build_annotator(name: str, options: AnnotatorOptions | None = None) -> Annotator:
    """The annotator called `name`; an unknown name is a ValueError listing the known ones."""
    options = options or AnnotatorOptions()
    _check_name(name, ANNOTATORS, "annotator")
    if name == PropagateAnnotator.name:
        _check_name(options.key_frame_annotator, KEY_FRAME_ANNOTATORS, "key-frame annotator")
        return PropagateAnnotator(build_annotator(options.key_frame_annotator, options))
    if name == PrivilegedAnnotator.name:
        return PrivilegedAnnotator(options.locations)
    if options.chat is None:
        raise ValueError("the vlm annotator needs an endpoint: set --vlm-url and --vlm-model (or DTVLA_VLM_URL and "
                         "DTVLA_VLM_MODEL)")
    cache = ResponseCache(options.cache_dir) if options.cache_dir is not None else None
    return VlmAnnotator(ChatClient(options.chat), cache)


def _check_name(name: str, known: tuple[str, ...], what: str) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")
