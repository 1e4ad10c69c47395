"""atomic_file: whole-file writes a reader never sees half of, and the torn tail of an append log."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dtvla_policy.atomic_file import cut_torn_tail, write_json, write_text


def test_write_json_replaces_the_file_readable_by_others_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "state.json", {"step": 1})
    write_json(path, {"step": 2}, sort_keys=True)
    assert json.loads(path.read_text()) == {"step": 2} and path.read_text().endswith("\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_value_that_does_not_serialise_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "state.json", {"step": 1})
    with pytest.raises(TypeError):
        write_json(path, {"step": object()})
    assert json.loads(path.read_text()) == {"step": 1} and len(list(tmp_path.iterdir())) == 1


def test_a_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):  # the target is a directory: the rename fails after the temp file was written
        write_text(tmp_path / "dir", "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b"", b""),
        (b'{"a": 1}\n', b'{"a": 1}\n'),
        (b'{"a": 1}\n{"a": 2', b'{"a": 1}\n'),  # killed mid-line
        (b'{"a": 1', b""),  # killed during the first line
        (b'{"a": 1}\n{"a": "' + b"x" * 200_000, b'{"a": 1}\n'),  # the last newline is blocks before the end
    ],
)
def test_cut_torn_tail_keeps_every_complete_line(tmp_path: Path, content: bytes, kept: bytes) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(content)
    assert cut_torn_tail(path) == len(content) - len(kept)
    assert path.read_bytes() == kept
    assert cut_torn_tail(tmp_path / "absent.jsonl") == 0
