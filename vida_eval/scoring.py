"""Scoring a ViDA-Bench submission exactly as the official scorer does, and saying why.

The official scorer wraps each metric in a try/except that returns 0.0 on
any error, so one malformed record silently zeroes a whole metric. Here each
metric reads the records with the official semantics, and every record that
would raise becomes a diagnostic. The official value is 0.0 when a metric
has such a record; ``counted_wrong`` is the value the metric would have if
those records were simply counted wrong (their boxes dropped, their answers
taken as incorrect).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from . import metrics
from .metrics.accuracy import normalize_distortion_name
from .parsing import parse_choice, parse_description, parse_grounding
from .records import GT_FILES, PREDICTION_FILES

OFFICIAL_KEYS = ("Final Score", *metrics.FINAL_SCORE_PARTS)
REGION, DETECTION = "region-perception", "distortion-detection"

# Which ground-truth files each prediction file is scored against.
GT_NEEDED = {
    "perception.json": ("mcq.json",),
    "grounding.json": ("reg-p_bench.json", "bench_metadata.json"),
    "description.json": ("bench_metadata.json",),
    "scoring.json": ("bench_metadata.json",),
}


@dataclass(frozen=True)
class Diagnostic:
    """Something about one record (or one file) that a participant must know."""

    severity: str  # "zeroes" (the official scorer returns 0.0 for the metric) or "warning"
    file: str
    message: str
    metric: str | None = None
    record: int | None = None  # position in the file
    record_id: object = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __str__(self) -> str:
        where = self.file
        if self.record is not None:
            where += f" record {self.record}"
            if self.record_id is not None:
                where += f" (id {self.record_id!r})"
        head = f"[{self.metric}] " if self.metric else ""
        return f"{self.severity.upper()}: {head}{where}: {self.message}"


@dataclass
class MetricResult:
    """The official value of a metric, its value with flagged records counted wrong, and details."""

    name: str
    official: float
    counted_wrong: float
    diagnostics: list[Diagnostic] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def zeroed(self) -> bool:
        return any(d.severity == "zeroes" for d in self.diagnostics)


class _Collector:
    """Diagnostics of one metric on one file."""

    def __init__(self, metric: str, file: str):
        self.metric, self.file = metric, file
        self.items: list[Diagnostic] = []

    def zeroes(self, message, record=None, record_id=None):
        self.items.append(Diagnostic("zeroes", self.file, message, self.metric, record, record_id))

    def warn(self, message, record=None, record_id=None):
        self.items.append(Diagnostic("warning", self.file, message, self.metric, record, record_id))

    @property
    def zeroed(self) -> bool:
        return any(d.severity == "zeroes" for d in self.items)

    def result(self, value: float, details: dict | None = None) -> MetricResult:
        official = 0.0 if self.zeroed else value
        return MetricResult(self.metric, official, value, self.items, details or {})


def _rid(record):
    return record.get("id") if isinstance(record, dict) else None


def _is_number(v) -> bool:
    return isinstance(v, (int, float))


def _iterable_list(items, c: _Collector, name: str, i: int, rid) -> bool:
    """True for a list; an empty str or dict is iterated harmlessly, anything else raises officially."""
    if isinstance(items, list):
        return True
    if isinstance(items, (str, dict)) and not items:
        return False
    c.zeroes(f"{name} is {type(items).__name__}, not a list", i, rid)
    return False


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------ perception

def _official_letter_index(answer):
    """The official reading: ord(first non-space character) - ord('A'), or None when it raises."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    return ord(answer.strip()[0]) - ord("A")


def _candidate_at(candidates, index):
    """candidates[index] with Python's indexing (negative indices included), or None when it raises."""
    if not isinstance(candidates, (list, str)) or index is None:
        return None
    return candidates[index] if -len(candidates) <= index < len(candidates) else None


def perception_accuracy(pred: list, gt: list, file="perception.json") -> MetricResult:
    """Perception Accuracy with the official pairing: both files sorted by id and zipped."""
    c = _Collector("Perception Accuracy", file)
    gt_ok = [g for g in gt if isinstance(g, dict) and "id" in g and "correct_ans" in g]
    if len(gt_ok) != len(gt):
        c.zeroes("ground truth mcq.json has records without id or correct_ans")
    for i, p in enumerate(pred):
        if not isinstance(p, dict) or "id" not in p:
            c.zeroes("record has no id (the official scorer sorts by id)", i)
    try:
        pred_sorted = sorted(((p, i) for i, p in enumerate(pred)), key=lambda t: t[0]["id"])
        gt_sorted = sorted(gt_ok, key=lambda g: g["id"])
    except (TypeError, KeyError):
        c.zeroes("ids of different types cannot be sorted together")
        pred_sorted, gt_sorted = [(p, i) for i, p in enumerate(pred)], gt_ok

    per_concern: dict[str, list[bool]] = defaultdict(list)
    def judge(p, i, g) -> bool:
        """Whether record p (position i) answers g correctly; flags what the official scorer trips on."""
        if not isinstance(p, dict):
            c.zeroes("record is not an object", i)
            return False
        answer, candidates = p.get("pred_ans"), p.get("candidates")
        if candidates is None:
            c.zeroes("record has no candidates (the official letter indexes the prediction's candidates)", i, p.get("id"))
            return False
        index = _official_letter_index(answer)
        official = _candidate_at(candidates, index)
        ours = parse_choice(answer, candidates if isinstance(candidates, list) else [])
        if official is None:
            c.zeroes(
                f"answer {answer!r} cannot be read as an option letter by the official scorer"
                + (f" ({ours.problem})" if ours.problem else f" (it reads as {ours.letter})"),
                i, p.get("id"),
            )
            return False
        if ours.letter is not None and official != ours.candidate:
            c.warn(f"answer {answer!r}: the official scorer reads {answer.strip()[0]!r}, not {ours.letter}", i, p.get("id"))
        if g.get("candidates") is not None and candidates != g.get("candidates"):
            c.warn("candidates differ from the ground truth's; the letter indexes the prediction's", i, p.get("id"))
        return official == g["correct_ans"]

    if len(pred) != len(gt):
        c.zeroes(f"{len(pred)} predictions for {len(gt)} questions (the official scorer requires equal lengths)")
        # Counted wrong: pair by id, a missing answer is wrong.
        pred_by_id = {p["id"]: (p, i) for i, p in enumerate(pred) if isinstance(p, dict) and _hashable(p.get("id"))}
        hits = []
        for g in gt_ok:
            p, i = pred_by_id.get(g["id"], (None, None))
            ok = p is not None and judge(p, i, g)
            hits.append(ok)
            per_concern[g.get("concern", "?")].append(ok)
    else:
        hits = []
        for (p, i), g in zip(pred_sorted, gt_sorted):
            if isinstance(p, dict) and p.get("id") != g["id"]:
                c.warn(f"paired with question id {g['id']!r} (the official scorer zips the id-sorted files)", i, p.get("id"))
            ok = judge(p, i, g)
            hits.append(ok)
            per_concern[g.get("concern", "?")].append(ok)
    value = sum(hits) / len(gt) if gt else 0.0
    details = {
        "per_concern": {k: sum(v) / len(v) for k, v in sorted(per_concern.items())},
        "correct": int(sum(hits)),
        "total": len(gt),
    }
    return c.result(value, details)


# ------------------------------------------------------------ detection mAPs

def _collect_boxes(records, c: _Collector, *, list_field, normalize, select=None, skip_no_distortion=False,
                   coord_fallbacks=(), gt_side=False):
    """{image: [(box, label)]} read with the official semantics; flags what would raise.

    A box whose coordinates are missing or not 4 values is skipped, as
    officially (a warning). Non-numeric coordinates are returned in
    ``suspect`` so the caller can tell whether the official IoU would touch
    (and so raise on) them.
    """
    boxes: dict = defaultdict(list)
    suspect = []  # (record, image, label, box): 4 values that are not all numbers
    for i, item in enumerate(records):
        rid = _rid(item)
        if not isinstance(item, dict):
            c.zeroes("record is not an object", i)
            continue
        if select is not None and not select(item):
            continue
        image = item.get("image")
        if "image" not in item or not _hashable(image):
            c.zeroes("record has no usable image name", i, rid)
            continue
        items = item.get(list_field, []) if not gt_side or list_field in item else []
        if not _iterable_list(items, c, list_field, i, rid):
            continue
        for k, d in enumerate(items):
            if not isinstance(d, dict):
                c.zeroes(f"{list_field}[{k}] is not an object", i, rid)
                continue
            label = d.get("distortion")
            if skip_no_distortion and label == "No distortion":
                continue
            if normalize:
                label = normalize_distortion_name(label)
            coords = d.get("coordinates")
            if not coords:
                for alt in coord_fallbacks:
                    coords = coords or d.get(alt)
            if coords and not isinstance(coords, (list, str, dict)):
                c.zeroes(f"{list_field}[{k}] coordinates {coords!r} have no length", i, rid)
                continue
            if not coords or len(coords) != 4:
                c.warn(f"{list_field}[{k}] skipped: coordinates {coords!r} are not 4 values", i, rid)
                continue
            if not isinstance(label, str):
                c.zeroes(f"{list_field}[{k}] has class {label!r}; classes must be text", i, rid)
                continue
            if not isinstance(coords, list) or not all(_is_number(v) for v in coords):
                suspect.append((i, rid, image, label, coords))
                continue
            if not all(math.isfinite(v) for v in coords):
                # Scored as the official IoU computes it (NaN matches nothing), and said.
                c.warn(f"{list_field}[{k}] coordinates {coords!r} hold a value that is not a finite number", i, rid)
            boxes[image].append((coords, label))
    return boxes, suspect


def _flag_suspects(suspect, gt_boxes, c: _Collector, side: str):
    """Non-numeric coordinates raise officially only when compared with a box of the same class and image."""
    for i, rid, image, label, coords in suspect:
        if any(lbl == label for _, lbl in gt_boxes.get(image, [])):
            c.zeroes(f"{side} box {coords!r} of {label!r} is not numeric", i, rid)
        else:
            c.warn(f"{side} box {coords!r} of {label!r} is not numeric (never compared, so harmless)", i, rid)


def _map_result(c: _Collector, gt_boxes, pred_boxes) -> MetricResult:
    result = metrics.mean_average_precision(gt_boxes, pred_boxes)
    details = {
        "per_class": {
            k: {"ap": v.ap, "gt": v.num_gt, "pred": v.num_pred, "tp": v.num_tp} for k, v in result.per_class.items()
        },
        # The box sets as the metric read them ({image: [(box, class)]}), for precision-recall curves.
        "boxes": (gt_boxes, pred_boxes),
    }
    only_pred = [k for k, v in result.per_class.items() if v.num_gt == 0]
    if only_pred:
        c.warn(f"classes never in the ground truth score AP 0 and lower the mean: {', '.join(map(repr, only_pred))}")
    return c.result(result.value, details)


def _detection_map(name, pred, gt, pred_file, gt_file, *, select, normalize, skip_no_distortion, gt_list_field="distortions",
                   pred_list_field="distortions", coord_fallbacks=()):
    c = _Collector(name, pred_file)
    g = _Collector(name, gt_file)
    gt_boxes, gt_suspect = _collect_boxes(gt, g, list_field=gt_list_field, normalize=normalize,
                                          skip_no_distortion=skip_no_distortion, gt_side=True)
    pred_boxes, suspect = _collect_boxes(pred, c, list_field=pred_list_field, normalize=normalize, select=select,
                                         skip_no_distortion=skip_no_distortion, coord_fallbacks=coord_fallbacks)
    _flag_suspects(suspect, gt_boxes, c, "predicted")
    for d in g.items:
        c.items.append(d)
    for i, rid, *_ in gt_suspect:
        c.zeroes("ground-truth box is not numeric", i, rid)
    return _map_result(c, gt_boxes, pred_boxes)


def region_map(pred: list, reg_gt: list, file="grounding.json") -> MetricResult:
    """Region mAP: region-perception boxes (or records without question_type) vs reg-p_bench, 'No distortion' dropped."""
    return _detection_map(
        "Region mAP", pred, reg_gt, file, "reg-p_bench.json",
        select=lambda r: "question_type" not in r or r["question_type"] == REGION,
        normalize=False, skip_no_distortion=True, coord_fallbacks=("pred_coords", "coords"),
    )


def distortion_map(pred: list, meta_gt: list, file="grounding.json") -> MetricResult:
    """Distortion mAP: boxes of both grounding question kinds vs bench_metadata, class names as written."""
    return _detection_map(
        "Distortion mAP", pred, meta_gt, file, "bench_metadata.json",
        select=lambda r: r.get("question_type") in (REGION, DETECTION),
        normalize=False, skip_no_distortion=False, coord_fallbacks=("pred_coords", "coords"),
    )


def description_map(pred: list, meta_gt: list, file="description.json") -> MetricResult:
    """Description mAP: all_distortions vs bench_metadata, names lower-cased with '_' -> ' ' and trimmed."""
    return _detection_map(
        "Description mAP", pred, meta_gt, file, "bench_metadata.json",
        select=None, normalize=True, skip_no_distortion=False, pred_list_field="all_distortions",
    )


# ------------------------------------------------------- description accuracies

def _gt_by_image(meta_gt: list) -> dict:
    return {g["image"]: g for g in meta_gt if isinstance(g, dict) and _hashable(g.get("image"))}


def key_distortion_accuracy(pred: list, meta_gt: list, file="description.json") -> MetricResult:
    """Key Distortion Accuracy over every predicted key distortion of an image with ground-truth distortions."""
    c = _Collector("Key Distortion Accuracy", file)
    gt = _gt_by_image(meta_gt)
    gt_keys: dict = {}
    pred_args = []
    for i, p in enumerate(pred):
        rid = _rid(p)
        if not isinstance(p, dict) or "image" not in p or not _hashable(p["image"]):
            c.zeroes("record has no usable image name", i, rid)
            continue
        keys = p.get("key_distortions", [])
        image = p["image"]
        g = gt.get(image)
        if g is None:
            continue
        gd = g.get("distortions", [])
        if not gd:
            continue
        if image not in gt_keys:
            if not isinstance(gd, list) or not all(isinstance(d, dict) for d in gd):
                # The official reading calls .get on each ground-truth distortion, and so raises.
                c.items.append(Diagnostic("zeroes", "bench_metadata.json", f"distortions of image {image!r} are "
                                          "not a list of objects", c.metric, None, g.get("id")))
                gt_keys[image] = None
                continue
            scored = [(d.get("distortion"), d.get("coordinates"), d.get("significance_score", 0)) for d in gd]
            gt_keys[image] = scored
        if gt_keys[image] is None:
            continue
        top = max(s for _, _, s in gt_keys[image])
        top_names = {normalize_distortion_name(n) for n, _, s in gt_keys[image] if s == top}
        if not _iterable_list(keys, c, "key_distortions", i, rid):
            continue
        pairs = []
        for k, key in enumerate(keys):
            if not isinstance(key, dict) or "distortion" not in key or "coordinates" not in key:
                c.zeroes(f"key_distortions[{k}] lacks 'distortion' or 'coordinates'", i, rid)
                pairs.append((None, None))
                continue
            box = key["coordinates"]
            name = normalize_distortion_name(key["distortion"])
            usable = isinstance(box, list) and len(box) >= 4 and all(_is_number(v) for v in box[:4])
            if not usable:
                if name in top_names:
                    c.zeroes(f"key_distortions[{k}] coordinates {box!r} are not a box", i, rid)
                else:
                    c.warn(f"key_distortions[{k}] coordinates {box!r} are not a box (never compared)", i, rid)
            pairs.append((key["distortion"], box[:4] if usable else None))
        pred_args.append((image, pairs))
    gt_keys = {k: v for k, v in gt_keys.items() if v is not None}
    pred_args = [(image, pairs) for image, pairs in pred_args if image in gt_keys]
    value, correct, total = metrics.key_distortion_accuracy(pred_args, gt_keys)
    if total == 0:
        c.warn("no key distortion predicted for an image with ground-truth distortions: the accuracy is 0")
    return c.result(value, {"correct": correct, "total": total})


def image_quality_accuracy(pred: list, meta_gt: list, file="description.json") -> MetricResult:
    """Image Quality Accuracy over prediction records whose image is in the ground truth (duplicates count twice)."""
    c = _Collector("Image Quality Accuracy", file)
    gt = _gt_by_image(meta_gt)
    pairs = []
    seen = Counter()
    for i, p in enumerate(pred):
        if not isinstance(p, dict) or "image" not in p or not _hashable(p["image"]):
            c.zeroes("record has no usable image name", i, _rid(p))
            continue
        if p["image"] in gt:
            seen[p["image"]] += 1
            if seen[p["image"]] == 2:
                c.warn(f"image {p['image']!r} is answered more than once; each answer counts", i, _rid(p))
            level = p.get("image_quality", "")
            if level not in ("bad", "poor", "fair", "good", "excellent"):
                c.warn(f"image_quality {level!r} is not a quality level", i, _rid(p))
            pairs.append((level, gt[p["image"]].get("level", "")))
    missing = len(set(gt) - set(seen))
    if missing:
        c.warn(f"{missing} ground-truth images have no description (not counted by the official scorer)")
    return c.result(metrics.image_quality_accuracy(pairs), {"total": len(pairs)})


# -------------------------------------------------------------- correlation

def correlation(pred: list, meta_gt: list, file="scoring.json") -> MetricResult:
    """(SRCC + PLCC) / 2 of pred_mos against mos, both files sorted by id (not part of the Final Score)."""
    c = _Collector("Correlation", file)
    if len(pred) != len(meta_gt):
        c.zeroes(f"{len(pred)} predictions for {len(meta_gt)} images (the official scorer requires equal lengths)")
    try:
        ps = sorted(pred, key=lambda r: r["id"])
        gs = sorted(meta_gt, key=lambda r: r["id"])
        x = [float(r["pred_mos"]) for r in ps]
        y = [float(r["mos"]) for r in gs]
    except (TypeError, KeyError, ValueError) as e:
        c.zeroes(f"records cannot be read as (id, pred_mos): {e!r}")
        return c.result(0.0)
    for r, v in zip(ps, x):
        if not math.isfinite(v):
            c.warn(f"pred_mos {v!r} is not a finite number: the correlations become NaN or meaningless", None, _rid(r))
    n = min(len(x), len(y))
    if n < 2:
        c.zeroes("fewer than two scores")
        return c.result(0.0)
    values = metrics.correlation(x[:n], y[:n])
    if any(math.isnan(v) for v in values.values()):
        c.warn("a constant prediction has no correlation (NaN)")
        values = {k: (0.0 if math.isnan(v) else v) for k, v in values.items()}
    return c.result(values["Correlation"], values)


# -------------------------------------------------------------- whole report

def fill_parsed_fields(name: str, records: list) -> int:
    """Add parsed fields missing from records that carry a raw pred_ans; returns how many records changed."""
    changed = 0
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("pred_ans"), str):
            continue
        if name == "grounding.json" and "distortions" not in r:
            r["distortions"] = parse_grounding(r["pred_ans"])
            changed += 1
        elif name == "description.json" and not {"all_distortions", "key_distortions", "image_quality"} <= r.keys():
            for k, v in parse_description(r["pred_ans"]).items():
                r.setdefault(k, v)
            changed += 1
    return changed


@dataclass
class Report:
    """All metrics of a submission with the official Final Score."""

    results: dict[str, MetricResult]
    notes: list[Diagnostic]

    def official(self) -> dict[str, float]:
        values = {k: (self.results[k].official if k in self.results else 0.0) for k in metrics.FINAL_SCORE_PARTS}
        return {"Final Score": metrics.final_score(values), **values}

    def counted_wrong(self) -> dict[str, float]:
        values = {k: (self.results[k].counted_wrong if k in self.results else 0.0) for k in metrics.FINAL_SCORE_PARTS}
        return {"Final Score": metrics.final_score(values), **values}

    @property
    def diagnostics(self) -> list[Diagnostic]:
        out = list(self.notes)
        for r in self.results.values():
            out.extend(r.diagnostics)
        return out

    def to_dict(self) -> dict:
        out: dict = dict(self.official())
        if any(r.zeroed for r in self.results.values()):
            out["if_flagged_records_counted_wrong"] = self.counted_wrong()
        if "Perception Accuracy" in self.results:
            out["perception_per_concern"] = self.results["Perception Accuracy"].details["per_concern"]
        out["per_class_ap"] = {
            k: self.results[k].details.get("per_class", {})
            for k in ("Region mAP", "Distortion mAP", "Description mAP") if k in self.results
        }
        if "Correlation" in self.results:
            r = self.results["Correlation"]
            out["correlation"] = {**{k: r.details[k] for k in ("SRCC", "PLCC") if k in r.details},
                                  "Correlation": r.official}
        out["diagnostics"] = [d.to_dict() for d in self.diagnostics]
        return out


def score(pred: dict[str, list], gt: dict[str, list]) -> Report:
    """Score prediction records (by file name) against ground-truth records (by file name)."""
    notes = []
    results: dict[str, MetricResult] = {}
    for name in PREDICTION_FILES:
        if name not in pred and name != "scoring.json":
            notes.append(Diagnostic("zeroes", name, "file is missing: its metrics are 0.0"))
    if "perception.json" in pred:
        results["Perception Accuracy"] = perception_accuracy(pred["perception.json"], gt["mcq.json"])
    if "grounding.json" in pred:
        results["Region mAP"] = region_map(pred["grounding.json"], gt["reg-p_bench.json"])
        results["Distortion mAP"] = distortion_map(pred["grounding.json"], gt["bench_metadata.json"])
    if "description.json" in pred:
        d = pred["description.json"]
        results["Description mAP"] = description_map(d, gt["bench_metadata.json"])
        results["Key Distortion Accuracy"] = key_distortion_accuracy(d, gt["bench_metadata.json"])
        results["Image Quality Accuracy"] = image_quality_accuracy(d, gt["bench_metadata.json"])
    if "scoring.json" in pred:
        results["Correlation"] = correlation(pred["scoring.json"], gt["bench_metadata.json"])
    return Report(results, notes)


def needed_ground_truth(pred_names) -> tuple[str, ...]:
    return tuple(n for n in GT_FILES if any(n in GT_NEEDED[p] for p in pred_names))
