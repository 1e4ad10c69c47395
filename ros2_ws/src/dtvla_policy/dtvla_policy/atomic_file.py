"""Files that a crash cannot tear: whole-file writes that replace atomically, and the torn tail of an append log.

Every JSON file dtvla reads back (to resume a run, check a rerun, or load a checkpoint) is written with
`write_json`/`write_text`: a temp sibling is written, fsynced and renamed over the target, so a reader sees the old
file or the new one, never half of one. Append-only JSONL logs (episode records, training metrics) cannot be
replaced on every line; their writers call `cut_torn_tail` on opening, which drops the partial last line a kill
mid-write leaves. Directories: see `atomic_directory`. Standard library only (the eval harness runs without torch).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dtvla_policy.atomic_directory import current_umask


def write_text(path: str | Path, text: str) -> Path:
    """Replace `path` with `text` (UTF-8) atomically; the directory is created if needed. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would survive the rename and hide the file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)  # the rename itself survives a power cut
    return path


def write_json(path: str | Path, value: Any, *, sort_keys: bool = False) -> Path:
    """`value` as indented JSON plus a newline, written atomically; a value that does not serialise leaves the old
    file untouched (the TypeError is raised before anything is written)."""
    return write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


def cut_torn_tail(path: str | Path) -> int:
    """Truncate an append-only line log after its last newline; returns the bytes cut (0: nothing was torn).

    A kill during an append leaves a last line without its newline. Writers append whole lines only, so every
    newline-terminated line is complete and the rest is the torn one.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        keep = _end_of_last_line(handle, size)
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return size - keep


def _end_of_last_line(handle: Any, size: int, block: int = 1 << 16) -> int:
    """Offset just past the last b"\\n" of an open binary file of `size` bytes (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
