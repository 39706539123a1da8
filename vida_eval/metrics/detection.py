"""Box IoU and VOC-style (all-point) average precision with the official ordering semantics."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise IoU of ``[x1, y1, x2, y2]`` boxes, shape ``(len(a), len(b))``.

    IoU = I / (area_a + area_b - I), with I = (min(x2) - max(x1)) * (min(y2) - max(y1))
    and no +1 on widths. A pair whose intersection has min(x2) < max(x1) or
    min(y2) < max(y1) scores 0, and so does a pair whose union is 0. Inverted
    boxes therefore overlap nothing.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    overlaps = (ix2 >= ix1) & (iy2 >= iy1)
    inter = (ix2 - ix1) * (iy2 - iy1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    valid = overlaps & (union != 0)
    return np.divide(inter, union, out=np.zeros_like(inter), where=valid)


def average_precision(is_tp: Sequence[bool], num_gt: int) -> float:
    """All-point interpolated AP (VOC2010+) of ranked detections.

    With cumulative TP(k) and FP(k) over the first k detections,
    recall(k) = TP(k) / num_gt and precision(k) = TP(k) / k. Padding recall with
    0 and 1 and precision with 0 and 0, taking the monotone envelope
    p*(k) = max_{j >= k} p(j), AP = sum over the points where recall changes of
    (r(k+1) - r(k)) * p*(k+1). AP is 0 when num_gt is 0.
    """
    if num_gt == 0:
        return 0.0
    tp = np.asarray(is_tp, dtype=np.float64)
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(1.0 - tp)
    recall = np.concatenate(([0.0], tp_cum / num_gt, [1.0]))
    precision = np.concatenate(([0.0], tp_cum / (tp_cum + fp_cum), [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    change = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[change + 1] - recall[change]) * precision[change + 1]))


def detection_ap(
    gt: Sequence[tuple[Hashable, Sequence[float]]],
    pred: Sequence[tuple[Hashable, Sequence[float]]],
    iou_threshold: float = 0.5,
) -> tuple[float, np.ndarray]:
    """AP of one class; *gt* and *pred* are ``(image, box)`` pairs, *pred* in rank order.

    Every detection has the same confidence, so the given order is the ranking.
    Each detection takes the first ground-truth box of its image with the
    highest IoU (matched or not, IoU > 0); it is a true positive when that IoU
    is >= *iou_threshold* and the box is not matched yet, which then becomes
    matched. Returns the AP and the true-positive flags in rank order.
    """
    gt_by_image: dict = {}
    for image, box in gt:
        gt_by_image.setdefault(image, []).append(box)
    pred_by_image: dict = {}
    for rank, (image, box) in enumerate(pred):
        pred_by_image.setdefault(image, ([], []))
        pred_by_image[image][0].append(rank)
        pred_by_image[image][1].append(box)
    is_tp = np.zeros(len(pred), dtype=bool)
    for image, (ranks, boxes) in pred_by_image.items():
        gt_boxes = gt_by_image.get(image)
        if not gt_boxes:
            continue
        iou = box_iou(boxes, gt_boxes)
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(len(ranks)), best]
        matched = np.zeros(len(gt_boxes), dtype=bool)
        for rank, j, value in zip(ranks, best, best_iou):
            if value >= iou_threshold and not matched[j]:
                matched[j] = True
                is_tp[rank] = True
    return average_precision(is_tp, len(gt)), is_tp


def by_class(boxes: Mapping[Hashable, Sequence[tuple[Sequence[float], str]]]) -> dict[str, list]:
    """{image: [(box, class)]} -> {class: [(image, box)]}, images in mapping order, boxes in list order."""
    out: dict[str, list] = {}
    for image, items in boxes.items():
        for box, label in items:
            out.setdefault(label, []).append((image, box))
    return out


@dataclass(frozen=True)
class ClassAP:
    """AP of one class with its ground-truth and prediction counts."""

    ap: float
    num_gt: int
    num_pred: int
    num_tp: int


@dataclass(frozen=True)
class MAPResult:
    """A mean AP and the per-class results it averages."""

    value: float
    per_class: dict[str, ClassAP]


def mean_average_precision(
    gt: Mapping[Hashable, Sequence[tuple[Sequence[float], str]]],
    pred: Mapping[Hashable, Sequence[tuple[Sequence[float], str]]],
    iou_threshold: float = 0.5,
) -> MAPResult:
    """mAP over the union of ground-truth and predicted classes.

    *gt* and *pred* map an image to its ``(box, class)`` list. Per class,
    detections are ranked by image in the mapping's order (first appearance),
    then in list order. mAP = mean over sorted classes of AP(class); a class on
    one side only has AP 0. mAP is 0 when either side has no box at all.
    """
    gt_by_class, pred_by_class = by_class(gt), by_class(pred)
    if not gt_by_class or not pred_by_class:
        return MAPResult(0.0, {})
    per_class: dict[str, ClassAP] = {}
    for label in sorted(set(gt_by_class) | set(pred_by_class)):
        g = gt_by_class.get(label, [])
        p = pred_by_class.get(label, [])
        ap, is_tp = detection_ap(g, p, iou_threshold)
        per_class[label] = ClassAP(ap, len(g), len(p), int(is_tp.sum()))
    value = float(np.mean([c.ap for c in per_class.values()]))
    return MAPResult(value, per_class)
