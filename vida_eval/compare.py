"""Evaluation runs side by side: every official metric of each run's ``scores.json``, and whether the last run
learned (``vida-eval compare``; ``make demo`` prints the untrained and the trained model with it).

A metric is *zeroed* when it is exactly 0.0: the official scorer returns 0.0 for a metric that fails on any
answer, and a model whose answers cannot be read scores 0.0 on it as well.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .metrics import FINAL_SCORE_PARTS
from .records import InputError

METRICS = ("Final Score", *FINAL_SCORE_PARTS)
CORRELATIONS = ("SRCC", "PLCC")


def read_scores(run: Path) -> dict:
    """A run folder's ``scores.json`` (``vida-eval eval`` writes it when the bench has ground truth)."""
    path = Path(run) / "scores.json"
    if not path.is_file():
        raise InputError(f"{path}: no scores (run `vida-eval eval` on a bench with ground truth first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None


def metric_values(scores: dict) -> dict[str, float]:
    """The official metrics, then SRCC and PLCC of the scoring task (NaN where a run has none)."""
    values = {k: float(scores.get(k, 0.0)) for k in METRICS}
    corr = scores.get("correlation") or {}
    values.update({k: float(corr.get(k, math.nan)) for k in CORRELATIONS})
    return values


def zeroed(values: dict[str, float]) -> list[str]:
    """The metrics that are exactly 0.0 (or missing, for the correlations)."""
    return [k for k, v in values.items() if v == 0.0 or math.isnan(v)]


def side_by_side(runs: dict[str, dict[str, float]]) -> list[str]:
    """A text table: one row per metric, one column per run, and the last run minus the first when there are
    two or more."""
    names = list(runs)
    keys = list(next(iter(runs.values())))
    width, col = max(map(len, keys)), max(9, *map(len, names))
    diff = len(names) > 1
    head = f"{'metric':<{width}}" + "".join(f"  {n:>{col}}" for n in names)
    lines = [head + (f"  {'change':>9}" if diff else "")]
    for k in keys:
        row = f"{k:<{width}}" + "".join(f"  {runs[n][k]:>{col}.4f}" for n in names)
        if diff:
            row += f"  {runs[names[-1]][k] - runs[names[0]][k]:>+9.4f}"
        lines.append(row)
    return lines


def learned(first: dict[str, float], last: dict[str, float]) -> list[str]:
    """Why the *last* run does not show learning against the *first* (empty when it does): a zeroed metric, or
    a Final Score that is not higher."""
    problems = [f"{k} is zeroed" for k in zeroed(last)]
    if last["Final Score"] <= first["Final Score"]:
        problems.append(f"Final Score {last['Final Score']:.4f} is not above {first['Final Score']:.4f}")
    return problems


def register(sub) -> None:
    from .cli_args import existing_dir

    sp = sub.add_parser("compare", help="print evaluation runs side by side (every official metric)")
    sp.add_argument("runs", nargs="+", type=existing_dir, help="run folders of `vida-eval eval` (first: the baseline)")
    sp.add_argument("--require-learning", action="store_true",
                    help="exit 1 unless the last run has no zeroed metric and a higher Final Score than the first")

    def run(args) -> int:
        runs = {}
        for folder in map(Path, args.runs):
            name = folder.name if folder.name not in runs else str(folder)
            runs[name] = metric_values(read_scores(folder))
        print("\n".join(side_by_side(runs)))
        if not args.require_learning:
            return 0
        (base, first), (name, last) = next(iter(runs.items())), list(runs.items())[-1]
        problems = learned(first, last)
        for p in problems:
            print(f"NOT LEARNED: {name}: {p}")
        if not problems:
            print(f"LEARNED: {name} is above {base} with no zeroed metric")
        return 1 if problems else 0

    sp.set_defaults(func=run)
