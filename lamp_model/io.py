"""Small file helpers shared by every module that writes outputs."""
from __future__ import annotations

import json
import os
import secrets
import struct
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


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors (atomically) with the same bytes for the same content.

    safetensors writes the header's metadata in hash-map order, which changes from
    process to process: the file's md5 (what DVC tracks) would then differ in every
    fresh run although the weights are identical, and rerun every stage that reads it.
    The header is re-written with sorted keys and padded with spaces to a multiple of
    8 bytes, as safetensors does (tensor offsets count from the header's end).
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    size = struct.unpack("<Q", data[:8])[0]
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)
    data = struct.pack("<Q", len(header)) + header + data[8 + size:]
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
