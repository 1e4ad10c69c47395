"""An on-disk cache of VLM answers, so a rerun of `dtvla-annotate` asks the endpoint nothing it asked before.

Keyed by the SHA-256 of (model, prompt text, image bytes): a changed prompt, image or model is a new key. One JSON
file per answer (`<dir>/<key[:2]>/<key>.json`), written atomically, so an interrupted run leaves no torn entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from dtvla_policy.atomic_file import write_json


def cache_key(model: str, prompt: str, images: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in (model.encode(), prompt.encode(), *images):
        digest.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two inputs hash the same bytes
        digest.update(part)
    return digest.hexdigest()


class ResponseCache:
    """Reply texts by key; `hits` counts answers served from disk."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.hits = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            reply = json.loads(path.read_text())["reply"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):  # absent, or damaged: ask again, overwrite it
            return None
        self.hits += 1
        return reply

    def put(self, key: str, reply: str) -> None:
        write_json(self._path(key), {"reply": reply})
