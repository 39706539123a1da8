"""Reading prediction and ground-truth files: folders, submission zips, clear errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath

PREDICTION_FILES = ("perception.json", "grounding.json", "description.json", "scoring.json")
SUBMISSION_FILES = ("perception.json", "grounding.json", "description.json")
GT_FILES = ("mcq.json", "reg-p_bench.json", "bench_metadata.json")


class InputError(Exception):
    """An input that cannot be used at all; the message names the file."""


def parse_json_list(text: bytes | str, name: str) -> list:
    """A JSON document that must be a list of records."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{name}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise InputError(f"{name}: expected a JSON list of records, found {type(data).__name__}")
    return data


def read_json_list(path: Path) -> list:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_json_list(raw, str(path))


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not (p.parts and p.parts[0].endswith(":"))


def read_predictions(path: str | Path, names=PREDICTION_FILES) -> tuple[dict[str, list], list[str]]:
    """Prediction files from a folder or a submission zip.

    Returns ({file name: records}, notes). Zip members are read in memory;
    members with '..' or an absolute path are refused.
    """
    path = Path(path)
    found: dict[str, list] = {}
    notes: list[str] = []
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                found[name] = read_json_list(path / name)
    elif path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path}: neither a folder nor a zip archive")
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                for m in members:
                    if not _safe_member(m.filename):
                        raise InputError(f"{path}: refusing member {m.filename!r} (absolute or '..' path)")
                for name in names:
                    at_root = [m for m in members if m.filename == name]
                    nested = [m for m in members if PurePosixPath(m.filename).name == name and m.filename != name]
                    if at_root:
                        found[name] = parse_json_list(zf.read(at_root[0]), f"{path}:{name}")
                    elif nested:
                        notes.append(
                            f"{path}: {nested[0].filename} is not at the archive root; "
                            "the official scorer only reads files at the root"
                        )
                        found[name] = parse_json_list(zf.read(nested[0]), f"{path}:{nested[0].filename}")
        except zipfile.BadZipFile as e:
            raise InputError(f"{path}: broken zip archive ({e})") from None
    else:
        raise InputError(f"{path}: no such file or folder")
    if not found:
        raise InputError(f"{path}: holds none of {', '.join(names)}")
    return found, notes


def read_ground_truth(folder: str | Path, needed=GT_FILES) -> dict[str, list]:
    """The ground-truth files of ViDA-Bench that *needed* names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: ground-truth folder does not exist")
    out = {}
    for name in needed:
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: ground-truth file is missing")
        out[name] = read_json_list(folder / name)
    return out


def write_json(path: str | Path, data, indent: int | None = 2) -> None:
    """Write JSON atomically (a temporary file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
