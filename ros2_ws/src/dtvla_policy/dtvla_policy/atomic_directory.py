"""Creating a directory all at once: written in a temp sibling, renamed into place, removed on any failure.

Checkpoints and datasets are read by other processes and survive crashes; nobody may ever see half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (os.umask can only be read by setting it; it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_files(directory: Path, recursive: bool = True) -> None:
    """Give every regular file in `directory` the mode an ordinary write would (0o666 & ~umask, 0644 usually).

    safetensors writes weights 0600, and mkstemp-style temp files are 0600 too: a policy node running as another
    user could not read a copied checkpoint.
    """
    mode = 0o666 & ~current_umask()
    for file in directory.rglob("*") if recursive else directory.iterdir():
        if file.is_file() and not file.is_symlink():
            os.chmod(file, mode)


@contextmanager
def new_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temp directory to fill; on success it becomes `out_dir` (which must not exist or be empty)."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would survive the rename
        yield tmp
        share_files(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
