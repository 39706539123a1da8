"""A local ViDA-Bench carved out of the training release, with its ground truth.

The organisers keep the validation bench's answers; the training release has
what a bench needs. ``train_metadata.json`` gives every image's MOS, level and
distortions (boxes and significance), and the ViDA-P MCQ and ViDA-G region
records ask questions about the same images with their answers. ``carve``
picks N images stratified by quality level and most significant distortion,
and writes them in the ViDA-Bench layout, so that ``vida-eval eval --bench DIR``
and ``vida-eval score --gt DIR/ground_truth`` run on it unchanged:

    DIR/release/{mcq.json, reg-p_ques.json, benchmark.json}
    DIR/ground_truth/{mcq.json, reg-p_bench.json, bench_metadata.json}
    DIR/images/<name> -> the release's training image (links, not copies)
    DIR/holdout.json   the images, seed and counts; ``data prepare --exclude`` reads it

How each bench field is made:
- MCQ: ``question`` and ``candidates`` from the human turn (the question, one
  "A. ..." line per option, the instruction line), ``correct_ans`` the text of
  the option the answer's letter names. ``concern`` (position / type /
  significance / severity) is not in the training files and the questions are
  free text, so it is written ``"unknown"`` rather than guessed.
- Region questions: the human turn's question; the ground truth the boxes of
  the answer as the official extraction reads them, "No distortion affects this
  region." as one "No distortion" entry holding the question's region.
- ``bench_metadata.json``: the image's ``train_metadata.json`` record.
A record that cannot become a bench item is listed with file, line and reason.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import prompts
from ..files import ensure_dir, write_json
from ..parsing import parse_boxes, parse_grounding
from ..records import InputError, read_json, read_json_list, safe_relative_path
from ..vocab import QUALITY_LEVELS
from .layout import Release
from .readers import iter_jsonl

HOLDOUT_FILE = "holdout.json"
UNKNOWN_CONCERN = "unknown"
NO_DISTORTION = "No distortion"
_OPTION = re.compile(r"^([A-Z])\. (.*)$")
_LETTER = re.compile(r"^\s*\(?([A-Z])\b")
_REGION = re.compile(r"<\|box_start\|>.*?<\|box_end\|>")


@dataclass
class Carved:
    images: list[str]
    counts: dict
    strata: dict
    rejected: list[dict] = field(default_factory=list)


def stratum(meta: dict) -> tuple[str, str]:
    """(quality level, the most significant distortion's type, or "none")."""
    dists = [d for d in meta["distortions"] if d.get("distortion")]
    if not dists:
        return meta["level"], "none"
    top = max(dists, key=lambda d: (_number(d.get("significance_score")), d["distortion"]))
    return meta["level"], top["distortion"]


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0


def _metadata_problem(m) -> str | None:
    if not isinstance(m, dict):
        return "not an object"
    if not isinstance(m.get("image"), str) or not safe_relative_path(m["image"]):
        return f"image {m.get('image')!r} is not a file name"
    if m.get("level") not in QUALITY_LEVELS:
        return f"level {m.get('level')!r} is not a quality level"
    if not isinstance(m.get("mos"), (int, float)) or not math.isfinite(m["mos"]):
        return f"mos {m.get('mos')!r} is not a number"
    dists = m.get("distortions")
    if not isinstance(dists, list) or not all(isinstance(d, dict) and isinstance(d.get("distortion"), str)
                                              for d in dists):
        return "distortions are not a list of {distortion, ...} objects"
    return None


def allocate(sizes: dict, n: int) -> dict:
    """Largest-remainder shares of *n* in proportion to *sizes* (never more than a stratum holds)."""
    total = sum(sizes.values())
    exact = {k: n * v / total for k, v in sizes.items()}
    share = {k: min(sizes[k], math.floor(x)) for k, x in exact.items()}
    for k in sorted(sizes, key=lambda k: (-(exact[k] - math.floor(exact[k])), str(k))):
        if sum(share.values()) >= n:
            break
        if share[k] < sizes[k]:
            share[k] += 1
    for k in sorted(sizes, key=lambda k: (-sizes[k], str(k))):  # strata too small for their share: fill elsewhere
        while sum(share.values()) < n and share[k] < sizes[k]:
            share[k] += 1
    return share


def pick_images(metadata: list[dict], n: int, seed: int) -> list[dict]:
    """*n* metadata records, seeded: each quality level gets its share of *n* (to the nearest image), and within a
    level each most-significant distortion type its share of the level's."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for m in sorted(metadata, key=lambda m: m["image"]):
        level, top = stratum(m)
        groups.setdefault(level, {}).setdefault(top, []).append(m)
    by_level = allocate({lv: sum(map(len, g.values())) for lv, g in groups.items()}, n)
    rng = random.Random(seed)
    picked = []
    for level in sorted(groups):
        share = allocate({t: len(v) for t, v in groups[level].items()}, by_level[level])
        for top in sorted(groups[level]):
            picked += rng.sample(groups[level][top], share[top])
    return sorted(picked, key=lambda m: m["image"])


def strata_table(metadata: list[dict], picked: list[dict]) -> dict:
    """Counts by level and by distortion type (images holding it), in the whole set and the holdout."""
    def counts(records):
        levels = Counter(m["level"] for m in records)
        types = Counter(t for m in records for t in {d["distortion"] for d in m["distortions"]})
        return levels, types

    full_levels, full_types = counts(metadata)
    held_levels, held_types = counts(picked)
    return {
        "level": {k: [full_levels[k], held_levels[k]] for k in QUALITY_LEVELS if full_levels[k]},
        "distortion": {k: [full_types[k], held_types[k]] for k in sorted(full_types)},
        "stratum": {f"{a} / {b}": [v, sum(1 for m in picked if stratum(m) == (a, b))]
                    for (a, b), v in sorted(Counter(stratum(m) for m in metadata).items())},
    }


def mcq_item(rec: dict) -> tuple[dict, str]:
    """(bench question, correct answer text) of a ViDA-P MCQ training record, or ValueError with the reason."""
    human, answer = _turns(rec)
    lines = [x for x in human.replace("<image>", "").strip().split("\n")]
    options = [(i, _OPTION.match(x)) for i, x in enumerate(lines)]
    options = [(i, m) for i, m in options if m]
    if len(options) < 2:
        raise ValueError("fewer than two 'A. ...' option lines")
    first, last = options[0][0], options[-1][0]
    letters = "".join(m.group(1) for _, m in options)
    if letters != prompts.OPTION_LETTERS[:len(letters)] or last - first + 1 != len(options):
        raise ValueError(f"options are not consecutive A, B, C ... lines ({letters})")
    question = "\n".join(lines[:first]).strip()
    if not question:
        raise ValueError("no question before the options")
    candidates = [m.group(2) for _, m in options]
    letter = _LETTER.match(answer)
    if not letter or letter.group(1) not in letters:
        raise ValueError(f"answer {answer[:40]!r} names no option")
    return {"question": question, "candidates": candidates}, candidates[letters.index(letter.group(1))]


def region_item(rec: dict) -> tuple[str, list[dict]]:
    """(question, ground-truth distortions) of a ViDA-G region-perception record, or ValueError."""
    human, answer = _turns(rec)
    question = human.replace("<image>", "").strip()
    region = _REGION.search(question)
    if not region or len(parse_boxes(region.group(0))) != 1:
        raise ValueError("the question holds no region box")
    boxes = parse_grounding(answer)
    if boxes:
        return question, boxes
    if answer.strip().startswith(NO_DISTORTION):
        return question, [{"distortion": NO_DISTORTION, "severity": None, "coordinates": parse_boxes(region.group(0))[0]}]
    raise ValueError(f"answer {answer[:60]!r} holds no box and is not 'No distortion ...'")


def _turns(rec) -> tuple[str, str]:
    if not isinstance(rec, dict):
        raise ValueError("record is not an object")
    conv = rec.get("conversations")
    if not isinstance(conv, list) or len(conv) != 2 or not all(isinstance(t, dict) and isinstance(t.get("value"), str)
                                                               for t in conv):
        raise ValueError("not one question and one answer")
    return conv[0]["value"], conv[1]["value"]


def _image_of(rec) -> str | None:
    image = rec.get("image", rec.get("images")) if isinstance(rec, dict) else None
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    return image if isinstance(image, str) else None


def carve(release_root: str | Path, n: int, out: str | Path, seed: int = 0) -> Carved:
    """Write a local bench of *n* training images of *release_root* into *out*; see the module docstring."""
    release = Release(release_root)
    out = Path(out)
    if release.holds(out):
        raise InputError(f"{out}: inside the release {release.root}; carve the bench into a folder outside it")
    if not release.train_metadata.is_file():
        raise InputError(f"{release.train_metadata}: missing (the bench's ground truth comes from it)")
    rejected: list[dict] = []
    metadata = []
    for i, m in enumerate(read_json_list(release.train_metadata)):
        problem = _metadata_problem(m) or (None if (release.train_images / m["image"]).is_file()
                                           else f"image {m['image']!r} not found in {release.train_images}")
        if problem:
            rejected.append({"file": str(release.train_metadata), "record": i, "reason": problem})
        else:
            metadata.append(m)
    seen = Counter(m["image"] for m in metadata)
    for m in [m for m in metadata if seen[m["image"]] > 1]:
        rejected.append({"file": str(release.train_metadata), "image": m["image"],
                         "reason": "image listed more than once (ambiguous ground truth)"})
    metadata = [m for m in metadata if seen[m["image"]] == 1]
    if n > len(metadata):
        raise InputError(f"--images {n}: {release.train_metadata} has {len(metadata)} usable images")
    picked = pick_images(metadata, n, seed)
    held = {m["image"]: m for m in picked}

    mcq, mcq_gt, questions, regions = [], [], [], []
    for name, build in (("vida_p_mcq", mcq_item), ("vida_g_reg_perception", region_item)):
        path = release.subset_file(name)
        if not path.is_file():
            raise InputError(f"{path}: missing (the bench's {name} questions come from it)")
        for line, rec in iter_jsonl(path):
            if isinstance(rec, Exception):
                rejected.append({"file": str(path), "line": line, "reason": str(rec)})
                continue
            image = _image_of(rec)
            if image not in held:
                continue
            try:
                item, truth = build(rec)
            except ValueError as e:
                rejected.append({"file": str(path), "line": line, "id": rec.get("id"), "reason": str(e)})
                continue
            size = {"width": held[image].get("width"), "height": held[image].get("height")}
            if name == "vida_p_mcq":
                q = {"id": len(mcq), "image": image, "concern": UNKNOWN_CONCERN, **item}
                mcq.append(q)
                mcq_gt.append({**q, "correct_ans": truth})
            else:
                q = {"id": len(questions), "image": image, **size, "question": item}
                questions.append(q)
                regions.append({**q, "distortions": truth})

    bench = [{"id": i, "image": m["image"], "width": m.get("width"), "height": m.get("height")}
             for i, m in enumerate(picked)]
    meta = [{"id": i, **{k: v for k, v in m.items() if k != "id"}} for i, m in enumerate(picked)]
    ensure_dir(out)
    for name, data in (("mcq.json", mcq), ("reg-p_ques.json", questions), ("benchmark.json", bench)):
        write_json(out / "release" / name, data)
    for name, data in (("mcq.json", mcq_gt), ("reg-p_bench.json", regions), ("bench_metadata.json", meta)):
        write_json(out / "ground_truth" / name, data)
    _link_images(out / "images", release.train_images, list(held))
    counts = {"images": len(picked), "mcq": len(mcq), "region_questions": len(questions),
              "rejected": len(rejected), "usable_images_in_release": len(metadata)}
    carved = Carved(sorted(held), counts, strata_table(metadata, picked), rejected)
    write_json(out / HOLDOUT_FILE, {
        "release": str(release.root.resolve()), "seed": seed, "images": carved.images, "counts": counts,
        "strata": carved.strata, "derived": {"concern": f"{UNKNOWN_CONCERN!r}: the training files do not carry it"},
        "rejected": rejected})
    return carved


def _link_images(folder: Path, source: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    keep = set(names)
    for old in folder.iterdir():  # an earlier carve into this folder: its links go
        if old.is_symlink() and old.name not in keep:
            old.unlink()
    for name in names:
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((source / name).resolve())


def held_out_images(path: str | Path) -> set[str]:
    """The image names a ``holdout.json`` (or the bench folder holding it) keeps out of training."""
    path = Path(path)
    if path.is_dir():
        path = path / HOLDOUT_FILE
    data = read_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise InputError(f"{path}: no 'images' list of names (write it with vida-eval data holdout)")
    return set(images)


def leaks(prepared: str | Path, held: set[str]) -> list[tuple[str, int, str]]:
    """(file, records, an example image) for each prepared ``*.jsonl`` holding records about *held* images.

    Prepared records name images as ``<folder>/images/<name>``."""
    found = []
    for path in sorted(Path(prepared).glob("*.jsonl")):
        n, example = 0, ""
        for _, rec in iter_jsonl(path):
            names = rec.get("images", []) if isinstance(rec, dict) else []
            hits = [x.split("/images/", 1)[-1] for x in names if isinstance(x, str)
                    and x.split("/images/", 1)[-1] in held]
            if hits:
                n += 1
                example = example or hits[0]
        if n:
            found.append((str(path), n, example))
    return found
