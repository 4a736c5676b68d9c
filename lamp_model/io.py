"""Small file helpers shared by every module that writes outputs."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` on success.

    Readers (DVC, MLflow, a half-finished pipeline rerun) then never see a
    truncated output: the file is either the old one or the complete new one.
    The temp file sits in the same folder (so `os.replace` is an atomic rename)
    and keeps the suffix (so tools that infer a format from it still work).
    It is not created here, so it gets the usual permissions when the body
    writes it; on any exception it is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
