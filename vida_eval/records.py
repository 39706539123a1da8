"""Reading prediction and ground-truth files: folders, submission zips, clear errors."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path, PurePosixPath

PREDICTION_FILES = ("perception.json", "grounding.json", "description.json", "scoring.json")
SUBMISSION_FILES = ("perception.json", "grounding.json", "description.json")
GT_FILES = ("mcq.json", "reg-p_bench.json", "bench_metadata.json")
# A prediction file for ViDA-Bench is a few MB; a member that unpacks to more is refused before it is read.
MAX_MEMBER_BYTES = 256 << 20


class InputError(Exception):
    """An input that cannot be used at all; the message names the file."""


def parse_json(text: bytes | str, name: str):
    """A JSON document; InputError naming *name* when it is not one."""
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{name}: not valid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply to read") from None


def parse_json_list(text: bytes | str, name: str) -> list:
    """A JSON document that must be a list of records."""
    data = parse_json(text, name)
    if not isinstance(data, list):
        raise InputError(f"{name}: expected a JSON list of records, found {type(data).__name__}")
    return data


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def read_json(path: Path):
    return parse_json(_read_bytes(path), str(path))


def read_json_list(path: Path) -> list:
    return parse_json_list(_read_bytes(path), str(path))


def safe_relative_path(name: str) -> bool:
    """True for a path that stays inside the folder it is relative to (an image name, a zip member): not empty,
    not absolute, no '..', no drive ('C:...')."""
    p = PurePosixPath(name.replace("\\", "/"))
    return (bool(name) and not p.is_absolute() and ".." not in p.parts and not re.match(r"^[A-Za-z]:", name)
            and not (p.parts and p.parts[0].endswith(":")))


def _read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> list:
    """A member's records, its size capped (a member's declared size can lie, so the read itself is capped)."""
    if member.file_size > MAX_MEMBER_BYTES:
        raise InputError(f"{where}: {member.file_size} bytes unpacked, over the {MAX_MEMBER_BYTES} a prediction "
                         "file may have")
    if member.flag_bits & 0x1:
        raise InputError(f"{where}: encrypted; the scorer reads plain zip members only")
    try:
        with zf.open(member) as f:
            raw = f.read(MAX_MEMBER_BYTES + 1)
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise InputError(f"{where}: cannot unpack ({e})") from None
    if len(raw) > MAX_MEMBER_BYTES:
        raise InputError(f"{where}: over {MAX_MEMBER_BYTES} bytes unpacked")
    return parse_json_list(raw, where)


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
                    if not safe_relative_path(m.filename):
                        raise InputError(f"{path}: refusing member {m.filename!r} (absolute or '..' path)")
                for name in names:
                    at_root = [m for m in members if m.filename == name]
                    nested = [m for m in members if PurePosixPath(m.filename).name == name and m.filename != name]
                    if at_root:
                        # Unpacking keeps the last of several members with one name: the file a grader reads.
                        member = at_root[-1]
                        if len(at_root) > 1:
                            notes.append(f"{path}: {len(at_root)} members named {name}; the last is read, as "
                                         "unzip and extraction keep it")
                    elif nested:
                        member = nested[0]
                        notes.append(f"{path}: {member.filename} is not at the archive root; "
                                     "the official scorer only reads files at the root")
                    else:
                        continue
                    found[name] = _read_member(zf, member, f"{path}:{member.filename}")
        except (zipfile.BadZipFile, EOFError) as e:
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
