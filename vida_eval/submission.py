"""Checking prediction files before submission and writing the submission zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from .files import atomic_write
from .parsing import parse_choice
from .prompts import DETECTION_QUESTION
from .records import SUBMISSION_FILES
from .scoring import DETECTION, REGION, Diagnostic, _candidate_at, _official_letter_index, fill_parsed_fields
from .vocab import QUALITY_LEVELS

# Fields without which the official scorer raises (and so returns 0.0 for a metric).
REQUIRED = {
    "perception.json": ("id", "pred_ans", "candidates"),
    "grounding.json": ("image",),
    "description.json": ("image",),
    "scoring.json": ("id", "pred_mos"),
}


def _is_box(v) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _check_boxes(items, field: str, name: str, i: int, rid, out: list) -> None:
    if not isinstance(items, list):
        out.append(Diagnostic("zeroes", name, f"{field} is {type(items).__name__}, not a list", None, i, rid))
        return
    for k, d in enumerate(items):
        if not isinstance(d, dict):
            out.append(Diagnostic("zeroes", name, f"{field}[{k}] is not an object", None, i, rid))
        elif not isinstance(d.get("distortion"), str):
            out.append(Diagnostic("zeroes", name, f"{field}[{k}] has class {d.get('distortion')!r}", None, i, rid))
        elif not _is_box(d.get("coordinates")):
            out.append(Diagnostic("zeroes", name, f"{field}[{k}] coordinates {d.get('coordinates')!r} are not 4 numbers",
                                  None, i, rid))


def question_type_of(record: dict) -> str:
    """The grounding question kind of a record: the detection question or a region question."""
    return DETECTION if record.get("question") == DETECTION_QUESTION else REGION


def check_and_repair(files: dict[str, list]) -> list[Diagnostic]:
    """Validate submission records in place; parse raw answers where parsed fields are missing.

    Repairs are reported as warnings: a perception answer the official scorer
    would misread but whose option our parser finds is rewritten as "X.", a
    grounding record without question_type gets the kind its question shows.
    Anything that would make the official scorer zero a metric is a
    "zeroes" diagnostic.
    """
    out: list[Diagnostic] = []
    for name in SUBMISSION_FILES:
        if name not in files:
            out.append(Diagnostic("zeroes", name, "file is missing: its metrics are 0.0"))
    for name, records in files.items():
        filled = fill_parsed_fields(name, records)
        if filled:
            out.append(Diagnostic("warning", name, f"parsed fields filled from pred_ans in {filled} records"))
        seen: dict = {}
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                out.append(Diagnostic("zeroes", name, "record is not an object", None, i))
                continue
            rid = r.get("id")
            for key in REQUIRED[name]:
                if key not in r:
                    out.append(Diagnostic("zeroes", name, f"missing field {key!r}", None, i, rid))
            if "pred_ans" not in r and name != "scoring.json":
                out.append(Diagnostic("warning", name, "no raw pred_ans kept beside the parsed fields", None, i, rid))
            if name == "grounding.json" and r.get("question_type") not in (REGION, DETECTION):
                kind = question_type_of(r)
                out.append(Diagnostic("warning", name, f"question_type {r.get('question_type')!r} set to {kind!r}",
                                      None, i, rid))
                r["question_type"] = kind
            dup_key = (r.get("question_type"), json.dumps(rid))
            if dup_key in seen:
                out.append(Diagnostic("warning", name, f"duplicate id (also record {seen[dup_key]})", None, i, rid))
            seen[dup_key] = i
            if name == "perception.json":
                _check_choice(r, i, name, out)
            elif name == "grounding.json":
                _check_boxes(r.get("distortions"), "distortions", name, i, rid, out)
            elif name == "description.json":
                _check_boxes(r.get("all_distortions"), "all_distortions", name, i, rid, out)
                _check_boxes(r.get("key_distortions"), "key_distortions", name, i, rid, out)
                if r.get("image_quality") not in QUALITY_LEVELS:
                    out.append(Diagnostic("warning", name, f"image_quality {r.get('image_quality')!r} is not a level "
                                          "(counted wrong)", None, i, rid))
    return out


def _check_choice(r: dict, i: int, name: str, out: list) -> None:
    rid, answer, candidates = r.get("id"), r.get("pred_ans"), r.get("candidates")
    if not isinstance(candidates, list):
        out.append(Diagnostic("zeroes", name, "candidates missing (the official letter indexes them)", None, i, rid))
        return
    ours = parse_choice(answer, candidates)
    official = _candidate_at(candidates, _official_letter_index(answer))
    if ours.letter is not None and official != ours.candidate:
        out.append(Diagnostic("warning", name, f"pred_ans {answer!r} rewritten as '{ours.letter}.' "
                              "(the official scorer reads only its first character)", None, i, rid))
        r["pred_ans"] = f"{ours.letter}."
    elif official is None:
        out.append(Diagnostic("zeroes", name, f"pred_ans {answer!r} has no option letter ({ours.problem})", None, i, rid))


def write_submission(files: dict[str, list], out: str | Path) -> Path:
    """A zip with the submission files at its root, written atomically."""
    out = Path(out)
    with atomic_write(out, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in SUBMISSION_FILES:
            if name in files:
                zf.writestr(name, json.dumps(files[name], ensure_ascii=False, indent=2))
    return out
