"""Plots and a short summary of an evaluation run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import metrics
from .files import atomic_write, write_text
from .metrics.detection import by_class
from .records import read_json_list
from .vocab import QUALITY_LEVELS


def pr_curves(gt: dict, pred: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class (recall, precision) at every rank, with the official ordering."""
    gt_by, pred_by = by_class(gt), by_class(pred)
    curves = {}
    for label, p in pred_by.items():
        g = gt_by.get(label, [])
        if not g:
            continue
        _, tp = metrics.detection_ap(g, p)
        tpc = np.cumsum(tp)
        curves[label] = (tpc / len(g), tpc / np.arange(1, len(tp) + 1))
    return curves


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix[1:], dpi=110)


def _by_image(meta: list | None, key: str) -> dict:
    """{image: record[key]} of the metadata records that have both (the scorer reports the others)."""
    return {m["image"]: m[key] for m in meta or [] if isinstance(m, dict) and isinstance(m.get("image"), str)
            and key in m}


def write_report(run: Path, gt_dir: Path | None, report=None) -> list[Path]:
    """PNG plots and summary.md in *run* from a scoring Report (None without ground truth); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    scores = report.to_dict() if report is not None else None
    load = lambda path: read_json_list(path) if path.is_file() else None
    description, scoring = load(run / "description.json"), load(run / "scoring.json")
    meta = load(gt_dir / "bench_metadata.json") if gt_dir is not None else None

    if scores and scores.get("per_class_ap"):
        per = scores["per_class_ap"]
        fig, axes = plt.subplots(1, len(per), figsize=(6 * len(per), 4.5), squeeze=False)
        for ax, (metric, classes) in zip(axes[0], per.items()):
            names = list(classes)
            ax.barh(names, [classes[n]["ap"] for n in names], color="tab:blue")
            ax.set_xlim(0, 1)
            ax.set_title(f"{metric} = {scores.get(metric, 0):.4f}")
            ax.set_xlabel("AP")
        fig.tight_layout()
        written.append(run / "per_class_ap.png")
        _save(fig, written[-1])
        plt.close(fig)

    results = report.results if report is not None else {}
    sets = [(name.split()[0], *results[name].details["boxes"])
            for name in ("Region mAP", "Distortion mAP", "Description mAP") if name in results]
    if sets:
        fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
        for ax, (title, gt, pred) in zip(axes[0], sets):
            for label, (rec, prec) in sorted(pr_curves(gt, pred).items()):
                ax.plot(rec, prec, label=label, lw=1.2)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"{title} precision-recall")
            if ax.lines:
                ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        written.append(run / "precision_recall.png")
        _save(fig, written[-1])
        plt.close(fig)

    if meta is not None and description:
        levels = list(QUALITY_LEVELS) + ["unknown"]
        truth = _by_image(meta, "level")
        cm = np.zeros((5, 6), dtype=int)
        for r in description:
            if isinstance(r, dict) and isinstance(r.get("image"), str) and truth.get(r["image"]) in QUALITY_LEVELS:
                p = r.get("image_quality")
                cm[QUALITY_LEVELS.index(truth[r["image"]]), levels.index(p) if p in levels else 5] += 1
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(6), levels)
        ax.set_yticks(range(5), QUALITY_LEVELS)
        for i in range(5):
            for j in range(6):
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=9)
        ax.set_xlabel("predicted level")
        ax.set_ylabel("true level")
        ax.set_title("Image quality level")
        fig.tight_layout()
        written.append(run / "quality_confusion.png")
        _save(fig, written[-1])
        plt.close(fig)

    if meta is not None and scoring:
        truth = _by_image(meta, "mos")
        pairs = [(truth[r["image"]], r["pred_mos"]) for r in scoring
                 if isinstance(r, dict) and isinstance(r.get("image"), str) and r["image"] in truth
                 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in (truth[r["image"]], r["pred_mos"]))]
        if pairs:
            fig, ax = plt.subplots(figsize=(5, 5))
            t, p = zip(*pairs)
            ax.scatter(t, p, s=10)
            ax.plot([1, 5], [1, 5], color="grey", lw=0.8)
            ax.set_xlabel("true MOS")
            ax.set_ylabel("predicted MOS")
            corr = (scores or {}).get("correlation", {})
            ax.set_title(f"MOS: SRCC {corr.get('SRCC', float('nan')):.3f}, PLCC {corr.get('PLCC', float('nan')):.3f}")
            fig.tight_layout()
            written.append(run / "mos_scatter.png")
            _save(fig, written[-1])
            plt.close(fig)

    lines = [f"# Evaluation: {run.name}", ""]
    if scores:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {scores[k]:.4f} |" for k in ("Final Score", *metrics.FINAL_SCORE_PARTS) if k in scores]
        if "correlation" in scores:
            c = scores["correlation"]
            lines.append(f"| SRCC / PLCC | {c.get('SRCC', 0):.4f} / {c.get('PLCC', 0):.4f} |")
        zeroing = [d for d in scores.get("diagnostics", []) if d.get("severity") == "zeroes"]
        lines += ["", f"{len(scores.get('diagnostics', []))} diagnostics, {len(zeroing)} that zero a metric."]
    else:
        lines.append("No ground truth: predictions and submission only.")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in written]]
    written.append(run / "summary.md")
    write_text(written[-1], "\n".join(lines) + "\n")
    return written
