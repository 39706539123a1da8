"""Accuracy-type metrics of ViDA-Bench."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from .detection import box_iou


def accuracy(predicted: Sequence, expected: Sequence) -> float:
    """Fraction of positions where predicted == expected; 0 for no positions.

    Perception Accuracy is this over the chosen candidates' texts against
    ``correct_ans``.
    """
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} answers")
    if not expected:
        return 0.0
    return sum(1 for p, e in zip(predicted, expected) if p == e) / len(expected)


def normalize_distortion_name(name: object) -> str:
    """Lower-case, '_' -> ' ', trimmed; '' for anything that is not text."""
    if not isinstance(name, str):
        return ""
    return name.lower().replace("_", " ").strip()


def key_distortion_accuracy(
    pred: Sequence[tuple[Hashable, Sequence[tuple[str, Sequence[float] | None]]]],
    gt: Mapping[Hashable, Sequence[tuple[str, Sequence[float], float]]],
) -> tuple[float, int, int]:
    """Key Distortion Accuracy = correct / total over predicted key distortions.

    *pred* is ``(image, [(name, box)])`` per prediction record; *gt* maps an
    image to ``[(name, box, significance)]``. Images absent from *gt* or without
    ground-truth distortions are skipped. A predicted key distortion is correct
    when one of the image's ground-truth distortions of maximal significance
    has the same normalised name and IoU > 0.5 (strictly). A box that cannot
    be compared (None) counts as wrong. Returns (accuracy, correct, total).
    """
    correct = total = 0
    for image, keys in pred:
        gt_items = gt.get(image)
        if not gt_items:
            continue
        top = max(s for _, _, s in gt_items)
        gt_keys = [(normalize_distortion_name(n), b) for n, b, s in gt_items if s == top]
        for name, box in keys:
            total += 1
            name = normalize_distortion_name(name)
            boxes = [b for n, b in gt_keys if n == name]
            if box is not None and boxes and (box_iou([box], boxes) > 0.5).any():
                correct += 1
    return (correct / total if total else 0.0), correct, total


def image_quality_accuracy(pairs: Sequence[tuple[object, object]]) -> float:
    """Fraction of (predicted level, ground-truth level) pairs that are equal; 0 for none."""
    return sum(1 for p, g in pairs if p == g) / len(pairs) if pairs else 0.0
