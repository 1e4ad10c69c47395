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
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
