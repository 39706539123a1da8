"""Rank and linear correlation of predicted and true MOS."""

from __future__ import annotations

from collections.abc import Sequence


def correlation(pred: Sequence[float], target: Sequence[float]) -> dict[str, float]:
    """SRCC (Spearman), PLCC (Pearson) and their mean (SRCC + PLCC) / 2."""
    # scipy.stats takes 0.6 s to import; only scoring.json needs it, and the Final Score does not.
    from scipy.stats import pearsonr, spearmanr

    srcc = float(spearmanr(pred, target)[0])
    plcc = float(pearsonr(pred, target)[0])
    return {"SRCC": srcc, "PLCC": plcc, "Correlation": (srcc + plcc) / 2}
