"""Did training teach the model anything? The untrained and the trained model's scores side by side.

Reads ``scores.json`` of two ``vida-eval eval`` run folders on the same bench
(``make learning-proof`` writes runs/proof-untrained and runs/proof-trained)
and the bench's ground truth, prints every official metric for both, and
checks the three signs that labels, image tokens, prompts and parsers line up:

- Perception Accuracy well above the chance of four options (0.25 + 0.10);
- Image Quality Accuracy above the share of the bench's most common level;
- Region mAP above zero.

Further trained runs (``make learning-proof-grouped`` adds runs/proof-grouped, trained on the same questions
as conversations per image, on the same budget of questions) print beside the first with their differences.
Exit status 0 when every trained model passes all three, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval.compare import METRICS, metric_values, read_scores, side_by_side
from vida_eval.infer.runner import find_bench
from vida_eval.records import InputError, read_ground_truth

CHANCE = 0.25
MARGIN = 0.10


def majority_share(meta_gt: list[dict]) -> tuple[str, float]:
    """The most common quality level of the bench and its share of the images."""
    counts = Counter(r["level"] for r in meta_gt)
    level, n = counts.most_common(1)[0]
    return level, n / len(meta_gt)


def checks(trained: dict, majority: float) -> list[tuple[str, float, str, bool]]:
    p, q, r = trained["Perception Accuracy"], trained["Image Quality Accuracy"], trained["Region mAP"]
    return [
        ("Perception Accuracy", p, f"> {CHANCE + MARGIN:.2f} (chance {CHANCE})", p > CHANCE + MARGIN),
        ("Image Quality Accuracy", q, f"> {majority:.4f} (majority class)", q > majority),
        ("Region mAP", r, "> 0", r > 0),
    ]


def same_budget(report: dict, batch: int, steps: int) -> tuple[int, int]:
    """(conversations per batch, steps) for the grouped set of a ``prepare_report.json`` that train on as many
    questions as *steps* batches of *batch* one-question records: per step about *batch* questions."""
    grouped = report["grouped"]
    per_conversation = grouped["records"] / grouped["conversations"]
    conv_batch = max(1, round(batch / per_conversation))
    return conv_batch, max(1, round(steps * batch / (conv_batch * per_conversation)))


def grouped_args(prepared: Path, recipe: Path, overrides: list[str] = ()) -> str:
    """LLaMA-Factory keys that train *recipe* (with the key=value *overrides* of the one-question run) on
    *prepared*'s grouped set with the same budget of questions; the other overrides pass through."""
    import yaml

    report_file = prepared / "prepare_report.json"
    report = json.loads(report_file.read_text())
    if "grouped" not in report:
        raise SystemExit(f"{report_file}: no grouped conversations (prepare with --group-by-image)")
    args = yaml.safe_load(recipe.read_text())
    rest = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("per_device_train_batch_size", "max_steps"):
            args[key] = int(value)
        elif key != "dataset":
            rest.append(item)
    batch, steps = same_budget(report, args["per_device_train_batch_size"], args["max_steps"])
    return " ".join([f"dataset={prepared.name}_grouped per_device_train_batch_size={batch} max_steps={steps}",
                     *rest])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("untrained", type=Path, help="run folder of the untrained model")
    ap.add_argument("trained", type=Path, nargs="+",
                    help="run folders of trained models (the first is the reference the others compare to)")
    ap.add_argument("--bench", type=Path, help="the bench the runs answered")
    ap.add_argument("--grouped-args", nargs="+", metavar="ARG",
                    help="PREPARED RECIPE [KEY=VALUE ...]: print the keys that train RECIPE (with the one-question "
                         "run's KEY=VALUE overrides) on PREPARED's grouped set on the same budget, and exit")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--grouped-args":  # before the positional runs: its values are no run folders
        if len(argv) < 3:
            ap.error("--grouped-args needs PREPARED and RECIPE")
        print(grouped_args(Path(argv[1]), Path(argv[2]), argv[3:]))
        return 0
    args = ap.parse_args(argv)
    if args.bench is None:
        ap.error("--bench is required")

    runs = [args.untrained, *args.trained]
    try:
        scores = {run.name: read_scores(run) for run in runs}
    except InputError as e:
        print(e, file=sys.stderr)
        return 2
    _, _, gt_dir = find_bench(args.bench)
    level, majority = majority_share(read_ground_truth(gt_dir, ("bench_metadata.json",))["bench_metadata.json"])

    keys = list(METRICS)
    names = list(scores)
    print("\n".join(side_by_side({n: metric_values(s) for n, s in scores.items()})))
    for name, s in scores.items():
        if "perception_per_concern" in s:
            print(f"{name}: perception per concern " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                 sorted(s["perception_per_concern"].items())))
    print(f"majority quality level on the bench: {level!r}, share {majority:.4f}")
    reference = names[1]
    for other in names[2:]:
        print(f"{other} - {reference}: " + ", ".join(
            f"{k} {scores[other].get(k, 0.0) - scores[reference].get(k, 0.0):+.4f}" for k in keys))
    ok = True
    for name in names[1:]:
        for check, value, target, passed in checks(scores[name], majority):
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'}  {name} {check} {value:.4f} {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
