"""Validating a ViDA release and converting it to what LLaMA-Factory reads.

Every record of every training file is checked; a bad one is repaired (and
counted) or moved to a rejects file with its file, line and reason. Nothing
disappears silently: the summary counts kept / repaired / rejected per file.

Checks: JSON / JSONL syntax, record shape, missing or unreadable images,
image paths escaping the image folder (refused), ``<image>`` tags against the
number of images (a missing tag for a single image is added), empty turns,
roles out of order, boxes outside 0..1000 (clamped) or inverted (swapped),
unknown distortion names (warned), duplicate ids (renamed). With a training
recipe (``--recipe``), each record's exact length as LLaMA-Factory will encode it
(``vida_eval.train.lengths``): records over the recipe's ``cutoff_len`` are
rejected, since LLaMA-Factory would cut their image tokens and the run would die,
and the summary gives each file's length distribution. The images' EXIF
orientation tags and their stored sizes against the metadata are reported
(``image_check``).

``vida_combined.jsonl`` is written in a fixed shuffled order (the release's
combined.json lists its subsets one after another): LLaMA-Factory's
``max_samples`` keeps the first N records of a file, and so takes a sample of
every subset instead of the first subset alone.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write, ensure_dir, write_json
from ..models.boxes import rewrite_boxes
from ..parsing import REF_END, REF_START
from ..prompts import DEFAULT_SYSTEM
from ..records import InputError
from ..vocab import canonical_distortion, canonical_severity
from .image_check import ImageCheck, frame_report
from .layout import Release
from .readers import iter_json_array, iter_jsonl

READ_ERROR_KINDS = ("JSON", "invalid UTF-8", "not a JSON list")
# Keys of a prepare summary that are not datasets.
SUMMARY_KEYS = ("images", "recipe", "removed", "holdout", "family", "grouped")

ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}
_REF = re.compile(re.escape(REF_START) + r"(.*?)" + re.escape(REF_END))
_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z _-]{2,40}):", re.MULTILINE)


class RecordError(Exception):
    """A record that cannot be used; the message is the reason."""


@dataclass
class FileReport:
    kept: int = 0
    repaired: int = 0
    rejected: int = 0
    held_out: int = 0  # well-formed records about a held-out bench image (--exclude), left out
    warnings: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    fatal: str | None = None
    lengths: list[int] = field(default_factory=list)  # tokens per kept record (with a recipe)
    image_lengths: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {"kept": self.kept, "repaired": self.repaired, "rejected": self.rejected, "held_out": self.held_out,
               "repairs": dict(self.repairs), "rejections": dict(self.reasons), "warnings": dict(self.warnings),
               **({"fatal": self.fatal} if self.fatal else {})}
        if self.lengths:
            out["tokens"] = distribution(self.lengths)
            out["image_tokens"] = distribution(self.image_lengths)
        return out


def distribution(values: list[int]) -> dict:
    """min, median, 90th / 99th percentile, max and mean of token counts (nearest-rank percentiles)."""
    v = sorted(values)

    def rank(q: float) -> int:
        return v[max(0, math.ceil(len(v) * q) - 1)]

    return {"min": v[0], "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": v[-1],
            "mean": round(sum(v) / len(v), 1)}


# ---------------------------------------------------------------- checking

def _fix_boxes(text: str, repairs: Counter) -> str:
    def fix(box):
        clamped = [min(1000, max(0, v)) for v in box]
        if clamped != box:
            repairs["box clamped to 0..1000"] += 1
        x1, y1, x2, y2 = clamped
        if x2 < x1 or y2 < y1:
            repairs["inverted box swapped"] += 1
            x1, x2 = sorted((x1, x2))
            y1, y2 = sorted((y1, y2))
        return [x1, y1, x2, y2]

    return rewrite_boxes(text, fix)


def _unknown_names(text: str) -> list[str]:
    out = []
    for ref in _REF.findall(text):
        words = ref.strip().split(None, 1)
        name = words[1] if len(words) == 2 and canonical_severity(words[0]) else ref
        if canonical_distortion(name) is None:
            out.append(name.strip())
    return out


def check_record(rec: object, images: ImageCheck, seen_ids: Counter, report: FileReport,
                 ids_elsewhere: dict[str, str] | None = None, dataset: str = "") -> dict:
    """A cleaned copy of a LLaVA-style record, or RecordError with the reason.

    *ids_elsewhere* maps the ids of the files read before to their dataset: an id seen there is a warning.
    """
    if not isinstance(rec, dict):
        raise RecordError(f"record is {type(rec).__name__}, not an object")
    repairs: Counter = Counter()
    conv = rec.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise RecordError("no conversations")
    image = rec.get("image", rec.get("images"))
    names = [] if image is None else ([image] if isinstance(image, str) else image)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RecordError(f"image field {image!r} is neither a name nor a list of names")
    turns = []
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"turn {k} has no text value")
        role = ROLES.get(turn.get("from", turn.get("role")))
        if role is None:
            raise RecordError(f"turn {k} has unknown role {turn.get('from')!r}")
        if role != ("human" if k % 2 == 0 else "gpt"):
            raise RecordError(f"turn {k} is {role}: roles must alternate human, gpt, ...")
        if role != turn.get("from"):
            repairs["role renamed"] += 1
        if not turn["value"].strip():
            raise RecordError(f"turn {k} ({role}) is empty")
        value = _fix_boxes(turn["value"], repairs)
        for name in _unknown_names(value):
            report.warnings[f"unknown distortion name {name!r}"] += 1
        turns.append({"from": role, "value": value})
    if len(turns) % 2:
        raise RecordError("the conversation ends with a human turn")
    tags = sum(t["value"].count("<image>") for t in turns)
    if tags != len(names):
        if tags == 0 and len(names) == 1:
            turns[0]["value"] = "<image>\n" + turns[0]["value"]
            repairs["<image> tag added"] += 1
        else:
            raise RecordError(f"{tags} <image> tags for {len(names)} images")
    for n in names:
        problem = images.problem(n)
        if problem:
            raise RecordError(problem)
    system = rec.get("system_prompt", rec.get("system"))
    if system is not None and not isinstance(system, str):
        raise RecordError("system_prompt is not text")
    rid = rec.get("id")
    rid = str(rid) if rid is not None else ""
    seen_ids[rid] += 1
    if ids_elsewhere is not None:
        first = ids_elsewhere.setdefault(rid, dataset)
        if first != dataset:
            report.warnings[f"id also used in {first}"] += 1
    if seen_ids[rid] > 1:
        rid = f"{rid}#dup{seen_ids[rid]}"
        repairs["duplicate id renamed"] += 1
    # Every record carries its system prompt: LLaMA-Factory's column mapping needs the field in all rows.
    out = {"id": rid, "conversations": turns, "images": names, "system": system or DEFAULT_SYSTEM}
    if repairs:
        report.repairs.update(repairs)
        report.repaired += 1
    return out


# ----------------------------------------------------------------- the pass

def shuffle_lines(path: Path, seed: int = 0) -> None:
    """Rewrite a JSONL file written by process_file (every line ends in a newline) in a seeded random order,
    holding only line offsets in memory."""
    offsets = []
    with open(path, "rb") as f:
        pos = 0
        for line in f:
            offsets.append((pos, len(line)))
            pos += len(line)
    random.Random(seed).shuffle(offsets)
    with open(path, "rb") as src, atomic_write(path, "wb") as dst:
        for start, size in offsets:
            src.seek(start)
            dst.write(src.read(size))


def _length_problem(cleaned: dict, images: ImageCheck, counter, report: FileReport) -> str | None:
    """Why *cleaned* is longer than the recipe allows (None when it fits); its length is recorded when it fits."""
    total, image = counter.count(cleaned, [images.size(n) for n in cleaned["images"]])
    cutoff = counter.recipe.cutoff_len
    if total > cutoff:
        return (f"{total} tokens ({image} of them image) exceed cutoff_len {cutoff} of {counter.recipe.name}: "
                "LLaMA-Factory would cut the image")
    report.lengths.append(total)
    report.image_lengths.append(image)
    return None


def process_file(path: Path, reader, images: ImageCheck, image_prefix: str, out_file: Path | None,
                 rejects_file: Path | None, progress=None, counter=None, ids_elsewhere=None,
                 name: str = "", exclude: set[str] | frozenset = frozenset(), boxes=None) -> FileReport:
    """Check every record of *path*; kept ones go to *out_file*, rejected ones (with line and reason) to
    *rejects_file*, each written atomically. A stale rejects file of an earlier run is removed. *boxes* (a
    ``prepared.RecordBoxes``) puts each kept record's boxes in a model family's convention."""
    from .prepared import BoxConventionError

    report = FileReport()
    seen: Counter = Counter()
    with ExitStack() as stack:
        out = stack.enter_context(atomic_write(out_file)) if out_file else None
        rej = None
        for line, rec in reader(path):
            if progress:
                progress(1)
            if isinstance(rec, Exception):
                reason, record, cleaned = str(rec), None, None
                if reader is iter_json_array:
                    report.fatal = f"{path}:{line}: {reason}; the rest of the file cannot be read"
                    report.reasons["unreadable rest of file"] += 1
                    break
            else:
                record = rec
                try:
                    cleaned = check_record(rec, images, seen, report, ids_elsewhere, name)
                    if boxes is not None:
                        cleaned = boxes(cleaned, images.size)
                    reason = _length_problem(cleaned, images, counter, report) if counter else None
                except (RecordError, BoxConventionError) as e:
                    cleaned, reason = None, str(e)
                if reason is not None:
                    cleaned = None
            if cleaned is None:
                report.rejected += 1
                report.reasons[_reason_class(reason)] += 1
                if rejects_file:
                    if rej is None:
                        rej = stack.enter_context(atomic_write(rejects_file))
                    rej.write(json.dumps({"file": str(path), "line": line, "reason": reason, "record": record},
                                         ensure_ascii=False) + "\n")
                continue
            if exclude and any(n in exclude for n in cleaned["images"]):
                report.held_out += 1
                continue
            report.kept += 1
            if out:
                cleaned["images"] = [f"{image_prefix}/{n}" for n in cleaned["images"]]
                out.write(json.dumps(cleaned, ensure_ascii=False) + "\n")
    if rejects_file and rej is None and rejects_file.exists():
        rejects_file.unlink()
    return report


def _reason_class(reason: str) -> str:
    """The rejection's class for the summary counts: the reason without its record-specific numbers."""
    if reason.startswith(READ_ERROR_KINDS):
        return reason.split(" (")[0]
    if "exceed cutoff_len" in reason:
        return "longer than cutoff_len" + reason.split("cutoff_len", 1)[1].split(":")[0]
    return reason


def _out_problem(release: Release, out: Path) -> str | None:
    if release.holds(out):
        return f"{out}: inside the release {release.root}; prepare into a folder outside it"
    if out.is_dir() and (out / "images").exists() and not (out / "images").is_symlink():
        return f"{out}: holds an 'images' folder of its own; prepare into another folder"
    return None


def prepare(release_root: str | Path, out: str | Path | None, verify_images: bool = True,
            progress_factory=None, recipe=None, exclude: str | Path | None = None, family=None,
            group_by_image: int = 0, choices_per_conversation: int = 0) -> dict:
    """Check every training file of a release; with *out*, write the LLaMA-Factory files there.

    *out* gets ``<name>.jsonl`` per registered dataset, an ``images`` link to
    the release's image folder, ``rejects/<name>.jsonl`` and ``prepare_report.json``.
    Image paths in the written records are relative to ``out``'s parent, the
    LLaMA-Factory ``dataset_dir``. With *recipe* (a ``train.recipe.Recipe``), records
    longer than its ``cutoff_len`` are rejected and each file's lengths summarised.
    With *exclude* (a ``holdout.json`` of ``vida-eval data holdout``), records about its images are left out
    and counted (``held_out``). With *family* (a ``models.families.Family``; default the recipe's model's, else
    Qwen2-VL), every box is written in its convention and ``family.json`` records it. A registered file that is missing is reported (``missing``) and no output is left for it;
    the outputs of an earlier preparation into *out* are replaced, and those it would leave stale removed.
    With *group_by_image* K, ``vida_grouped.jsonl`` also holds the nine subsets' records as conversations of at
    most K questions about one image (``grouping``), each within the recipe's cutoff_len when there is a recipe,
    and at most *choices_per_conversation* multiple-choice questions in each when that is given.

    Returns {dataset name: its report, ..., "images": the frame report, "recipe": what lengths were counted
    with, "removed": stale files removed from *out*}.
    InputError when the release cannot be read at all: no images folder, no training files, or ambiguous folders.
    """
    release = Release(release_root)
    if not release.train_images.is_dir():
        raise InputError(f"{release.train_images}: no training images folder in {release.root}")
    ambiguous = release.layout_problems()
    if ambiguous:
        raise InputError("; ".join(ambiguous))
    files = release.training_files()
    if all(f.problem for f in files):
        raise InputError(f"{release.qwen2}: no ViDA training files found")
    images = ImageCheck(release.train_images, verify_images)
    held = set()
    if exclude is not None:
        from .holdout import held_out_images

        held = held_out_images(exclude)
    family, boxes = _family_boxes(family, recipe)
    counter = None
    if recipe is not None:
        from ..train.lengths import LengthCounter

        counter = LengthCounter(recipe)
    image_prefix = ""
    if out is not None:
        out = Path(out)
        problem = _out_problem(release, out)
        if problem:
            raise InputError(problem)
        ensure_dir(out)
        link = out / "images"
        if link.is_symlink():
            link.unlink()
        os.symlink(release.train_images.resolve(), link, target_is_directory=True)
        image_prefix = f"{out.name}/images"
    summary = {}
    ids_elsewhere: dict[str, str] = {}
    for f in files:
        name, path = f.name, f.path
        if f.problem:
            summary[name] = {"file": str(path), "missing": f.problem, **FileReport().to_dict()}
            continue
        reader = iter_json_array if path.suffix == ".json" else iter_jsonl
        bar = progress_factory(path) if progress_factory else None
        report = process_file(path, reader, images, image_prefix,
                              out / f"{name}.jsonl" if out else None,
                              out / "rejects" / f"{name}.jsonl" if out else None,
                              bar.update if bar is not None else None, counter,
                              None if name == "vida_combined" else ids_elsewhere, name, held, boxes)
        if bar is not None:
            bar.close()
        if out is not None and name == "vida_combined":
            shuffle_lines(out / f"{name}.jsonl")
        summary[name] = {"file": str(path), **report.to_dict()}
    summary["images"] = frame_report(images, _metadata(release))
    if exclude is not None:
        summary["holdout"] = {"file": str(exclude), "images": len(held)}
    if counter is not None:
        summary["recipe"] = {"file": str(recipe.path), "cutoff_len": recipe.cutoff_len,
                             "image_pixels": [recipe.image_min_pixels, recipe.image_max_pixels],
                             "template": recipe.template, "tokenizer": counter.tokenizer_source}
    summary["family"] = boxes.convention if boxes is not None else {"family": family.name, "boxes": family.boxes,
                                                                     "template": family.template}
    if out is not None and group_by_image:
        from .grouping import write_grouped

        fits = None
        if counter is not None:
            def fits(conv):
                sizes = [images.size(n[len(image_prefix) + 1:]) for n in conv["images"]]
                return counter.count(conv, sizes)[0] <= recipe.cutoff_len
        subsets = [f.name for f in files if not f.problem and f.name != "vida_combined"]
        summary["grouped"] = write_grouped(out, subsets, group_by_image, fits, choices_per_conversation)
        shuffle_lines(out / "vida_grouped.jsonl")
    if out is not None:
        from .prepared import write_convention

        summary["removed"] = _remove_stale(out, [f.name for f in files if f.problem]
                                           + ([] if group_by_image else ["vida_grouped"]))
        write_convention(out, summary["family"])
        write_json(out / "prepare_report.json", summary)
    return summary


def _family_boxes(family, recipe):
    """(the family to prepare for, its ``RecordBoxes`` or None): *family*, else the recipe's model's; InputError
    when the two disagree on boxes, or when pixel boxes have no recipe to give their limits."""
    from ..models.families import DEFAULT
    from .prepared import RecordBoxes

    model_family = recipe.family() if recipe is not None else None
    family = family or model_family or DEFAULT
    if model_family is not None and family.boxes != model_family.boxes:
        raise InputError(f"--family {family.name} writes {family.boxes} boxes, but {recipe.path} trains "
                         f"{model_family.title} ({model_family.boxes} boxes): pass --family {model_family.name}")
    if not family.converts_boxes:
        return family, None
    if recipe is None:
        raise InputError(f"--family {family.name}: {family.title} boxes are pixels of the image as training resizes "
                         f"it; give the training recipe (--recipe {family.recipe}) for its pixel limits")
    return family, RecordBoxes(family, recipe)


def _remove_stale(out: Path, missing: list[str]) -> list[str]:
    """Remove what an earlier preparation wrote for the datasets this one could not read."""
    removed = []
    for name in missing:
        for stale in (out / f"{name}.jsonl", out / "rejects" / f"{name}.jsonl"):
            if stale.is_file():
                stale.unlink()
                removed.append(str(stale))
    return removed


def problems_of(summary: dict) -> list[str]:
    """What in a prepare summary loses records: missing files and files that could not be read to the end."""
    out = []
    for name, r in summary.items():
        if name in SUMMARY_KEYS:
            continue
        if r.get("missing"):
            out.append(f"{name}: {r['missing']}")
        if r.get("fatal"):
            out.append(f"{name}: {r['fatal']}")
    return out


def _metadata(release: Release) -> list | None:
    """train_metadata.json's records, or None when the release has none (or it cannot be read)."""
    from ..records import read_json_list

    if not release.train_metadata.is_file():
        return None
    try:
        return read_json_list(release.train_metadata)
    except InputError:
        return None
