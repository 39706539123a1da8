"""Checking a release's ViDA-Bench files: every record has the fields the tasks and the scorer read, and its image."""

from __future__ import annotations

from pathlib import Path

from ..records import InputError, read_json_list, safe_relative_path
from .layout import BENCH_GT_FIELDS, BENCH_RELEASE_FIELDS, Release


def check_bench(release_root: str | Path) -> list[str]:
    """Problems in the bench files (release and, when present, ground truth)."""
    release = Release(release_root)
    problems = []
    required = {**{release.bench_release / name: keys for name, keys in BENCH_RELEASE_FIELDS.items()},
                **{release.bench_gt / name: keys for name, keys in BENCH_GT_FIELDS.items()}}
    for path, keys in required.items():
        if not path.is_file():
            if path.parent == release.bench_release:
                problems.append(f"{path}: missing")
            continue
        try:
            records = read_json_list(path)
        except InputError as e:
            problems.append(str(e))
            continue
        for i, r in enumerate(records):
            missing = [k for k in keys if not isinstance(r, dict) or k not in r]
            if missing:
                problems.append(f"{path} record {i}: missing {', '.join(missing)}")
            elif "image" in keys and not (isinstance(r["image"], str) and safe_relative_path(r["image"])):
                problems.append(f"{path} record {i}: image {r['image']!r} is not a file name in the images folder")
            elif "image" in keys and not (release.val_images / r["image"]).is_file():
                problems.append(f"{path} record {i}: image {r['image']!r} not found in {release.val_images}")
    return problems
