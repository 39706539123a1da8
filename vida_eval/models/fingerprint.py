"""A model folder's identity for caches: what answers depend on, cheap to compute on multi-gigabyte weights."""

from __future__ import annotations

import hashlib
from pathlib import Path


def model_fingerprint(model: str, adapter: str | None = None) -> str:
    """A short hash of a model folder (config and weight files' sizes, heads and tails) and adapter."""
    h = hashlib.sha256()
    for root in filter(None, (model, adapter)):
        p = Path(root)
        if not p.is_dir():
            h.update(str(root).encode())
            continue
        for f in sorted(p.iterdir()):
            if f.suffix in (".json", ".safetensors", ".bin", ".jinja") and f.is_file():
                size = f.stat().st_size
                h.update(f"{f.name}:{size}".encode())
                with open(f, "rb") as fh:
                    h.update(fh.read(1 << 16))
                    if size > 1 << 17:
                        fh.seek(-(1 << 16), 2)
                        h.update(fh.read(1 << 16))
    return h.hexdigest()[:16]
