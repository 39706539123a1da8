"""A second, deliberately naive reading of the official ViDA-Bench scorer, for tests.

Written from the metric definitions (docs: VIDA.md section 6) as plain loops,
with the scorer's "any exception makes the metric 0.0" rule, so that the
vectorised implementation in vida_eval can be checked against it on random
inputs. Not used by the package.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def iou(a, b):
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    if right < left or bottom < top:
        return 0.0
    inter = (right - left) * (bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union == 0:
        return 0.0
    return inter / union


def ap_of_class(gts, preds, thr=0.5):
    """gts: [(box, image)], preds: [(box, image)] in rank order."""
    if not gts:
        return 0.0
    tp = np.zeros(len(preds))
    fp = np.zeros(len(preds))
    used = {}
    for i, (box, image) in enumerate(preds):
        best, best_j = 0, -1
        for j, (g, gimage) in enumerate(gts):
            if gimage != image:
                continue
            v = iou(box, g)
            if v > best:
                best, best_j = v, j
        if best >= thr and not used.get(best_j):
            used[best_j] = True
            tp[i] = 1
        else:
            fp[i] = 1
    tpc, fpc = np.cumsum(tp), np.cumsum(fp)
    rec = np.concatenate(([0.0], tpc / len(gts), [1.0]))
    prec = np.concatenate(([0.0], tpc / (tpc + fpc), [0.0]))
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    idx = np.where(rec[1:] != rec[:-1])[0]
    return np.sum((rec[idx + 1] - rec[idx]) * prec[idx + 1])


def mean_ap(gt_map, pred_map):
    gts, preds = {}, {}
    for image, items in gt_map.items():
        for box, label in items:
            gts.setdefault(label, []).append((box, image))
    for image, items in pred_map.items():
        for box, label in items:
            preds.setdefault(label, []).append((box, image))
    if not gts or not preds:
        return 0.0
    return np.mean([ap_of_class(gts.get(c, []), preds.get(c, [])) for c in sorted(set(gts) | set(preds))])


def _norm(name):
    return name.lower().replace("_", " ").strip() if isinstance(name, str) else ""


def _guard(fn):
    def wrapped(*a):
        try:
            return fn(*a)
        except Exception:  # noqa: BLE001  (the official scorer swallows every error)
            return 0.0
    return wrapped


@_guard
def perception(pred, gt):
    assert len(pred) == len(gt)
    pred = sorted(pred, key=lambda r: r["id"])
    gt = sorted(gt, key=lambda r: r["id"])
    good = 0
    for p, g in zip(pred, gt):
        if p["candidates"][ord(p["pred_ans"].strip()[0]) - ord("A")] == g["correct_ans"]:
            good += 1
    return good / len(gt) if gt else 0


def _boxes(records, field, keep, label_of, skip_none, fallbacks):
    out = {}
    for r in records:
        if not keep(r):
            continue
        for d in r.get(field, []):
            label = label_of(d.get("distortion"))
            if skip_none and label == "No distortion":
                continue
            coords = d.get("coordinates")
            if not coords and fallbacks:
                coords = d.get("pred_coords") or d.get("coords")
            if coords and len(coords) == 4:
                out.setdefault(r["image"], []).append((coords, label))
    return out


@_guard
def region_map(pred, reg_gt):
    g = _boxes(reg_gt, "distortions", lambda r: "distortions" in r, lambda x: x, True, False)
    p = _boxes(pred, "distortions", lambda r: "question_type" not in r or r["question_type"] == "region-perception",
               lambda x: x, True, True)
    return mean_ap(g, p)


@_guard
def distortion_map(pred, meta):
    g = _boxes(meta, "distortions", lambda r: True, lambda x: x, False, False)
    p = _boxes(pred, "distortions",
               lambda r: "question_type" in r and r["question_type"] in ("distortion-detection", "region-perception"),
               lambda x: x, False, True)
    return mean_ap(g, p)


@_guard
def description_map(pred, meta):
    g = _boxes(meta, "distortions", lambda r: True, _norm, False, False)
    p = _boxes(pred, "all_distortions", lambda r: True, _norm, False, False)
    return mean_ap(g, p)


@_guard
def key_accuracy(pred, meta):
    by_image = {g["image"]: g for g in meta}
    good = total = 0
    for p in pred:
        image = p["image"]
        keys = p.get("key_distortions", [])
        if image not in by_image or not by_image[image].get("distortions", []):
            continue
        dists = by_image[image]["distortions"]
        top = max(d.get("significance_score", 0) for d in dists)
        tops = [d for d in dists if d.get("significance_score", 0) == top]
        for k in keys:
            total += 1
            name, box = _norm(k["distortion"]), k["coordinates"]
            for d in tops:
                if name == _norm(d["distortion"]) and iou(box, d["coordinates"]) > 0.5:
                    good += 1
                    break
    return good / total if total else 0.0


@_guard
def quality_accuracy(pred, meta):
    by_image = {g["image"]: g for g in meta}
    good = total = 0
    for p in pred:
        if p["image"] in by_image:
            total += 1
            good += p.get("image_quality", "") == by_image[p["image"]].get("level", "")
    return good / total if total else 0.0


@_guard
def correlation(pred, meta):
    assert len(pred) == len(meta)
    x = [r["pred_mos"] for r in sorted(pred, key=lambda r: r["id"])]
    y = [r["mos"] for r in sorted(meta, key=lambda r: r["id"])]
    return (spearmanr(x, y)[0] + pearsonr(x, y)[0]) / 2


def official_scores(perception_pred, grounding_pred, description_pred, mcq, reg, meta) -> dict:
    parts = {
        "Perception Accuracy": perception(perception_pred, mcq),
        "Region mAP": region_map(grounding_pred, reg),
        "Distortion mAP": distortion_map(grounding_pred, meta),
        "Description mAP": description_map(description_pred, meta),
        "Key Distortion Accuracy": key_accuracy(description_pred, meta),
        "Image Quality Accuracy": quality_accuracy(description_pred, meta),
    }
    total = 0.0
    for v in parts.values():
        total = total + v
    return {"Final Score": float(total), **{k: float(v) for k, v in parts.items()}}
