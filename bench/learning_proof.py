"""Did training teach the model anything? The untrained and the trained model's scores side by side.

Reads ``scores.json`` of two ``vida-eval eval`` run folders on the same bench
(``make learning-proof`` writes runs/proof-untrained and runs/proof-trained)
and the bench's ground truth, prints every official metric for both, and
checks the three signs that labels, image tokens, prompts and parsers line up:

- Perception Accuracy well above the chance of four options (0.25 + 0.10);
- Image Quality Accuracy above the share of the bench's most common level;
- Region mAP above zero.

Exit status 0 when the trained model passes all three, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval.infer.runner import find_bench
from vida_eval.metrics import FINAL_SCORE_PARTS
from vida_eval.records import read_ground_truth

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("untrained", type=Path, help="run folder of the untrained model")
    ap.add_argument("trained", type=Path, help="run folder of the trained model")
    ap.add_argument("--bench", type=Path, required=True, help="the bench both runs answered")
    args = ap.parse_args(argv)

    scores = {}
    for name in ("untrained", "trained"):
        path = getattr(args, name) / "scores.json"
        if not path.is_file():
            print(f"{path}: no scores (run `vida-eval eval` on a bench with ground truth first)", file=sys.stderr)
            return 2
        scores[name] = json.loads(path.read_text())
    _, _, gt_dir = find_bench(args.bench)
    level, majority = majority_share(read_ground_truth(gt_dir, ("bench_metadata.json",))["bench_metadata.json"])

    keys = ["Final Score", *FINAL_SCORE_PARTS]
    width = max(map(len, keys))
    print(f"{'metric':<{width}}  {'untrained':>9}  {'trained':>9}")
    for k in keys:
        print(f"{k:<{width}}  {scores['untrained'].get(k, 0.0):>9.4f}  {scores['trained'].get(k, 0.0):>9.4f}")
    for name, s in scores.items():
        if "correlation" in s:
            c = s["correlation"]
            print(f"{name}: SRCC {c.get('SRCC', float('nan')):.4f}, PLCC {c.get('PLCC', float('nan')):.4f}")
        if "perception_per_concern" in s:
            print(f"{name}: perception per concern " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                 sorted(s["perception_per_concern"].items())))
    print(f"majority quality level on the bench: {level!r}, share {majority:.4f}")
    ok = True
    for name, value, target, passed in checks(scores["trained"], majority):
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  trained {name} {value:.4f} {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
