"""ViDA-Bench metrics: pure functions on plain values, no I/O.

They reproduce the official challenge scorer, ordering semantics included;
``vida_eval.scoring`` turns prediction and ground-truth records into their
arguments.
"""

from .accuracy import accuracy, image_quality_accuracy, key_distortion_accuracy
from .correlation import correlation
from .detection import (
    ClassAP,
    MAPResult,
    average_precision,
    box_iou,
    detection_ap,
    mean_average_precision,
)

FINAL_SCORE_PARTS = (
    "Perception Accuracy",
    "Region mAP",
    "Distortion mAP",
    "Description mAP",
    "Key Distortion Accuracy",
    "Image Quality Accuracy",
)


def final_score(values: dict) -> float:
    """Final Score = Perception Accuracy + Region mAP + Distortion mAP + Description mAP
    + Key Distortion Accuracy + Image Quality Accuracy, added in that order."""
    total = 0.0
    for name in FINAL_SCORE_PARTS:
        total = total + values[name]
    return float(total)


__all__ = [
    "FINAL_SCORE_PARTS",
    "ClassAP",
    "MAPResult",
    "accuracy",
    "average_precision",
    "box_iou",
    "correlation",
    "detection_ap",
    "final_score",
    "image_quality_accuracy",
    "key_distortion_accuracy",
    "mean_average_precision",
]
