"""Wall time to score a full 476-image ViDA-Bench submission, in-process and as a CLI call.

Builds a bench-shaped submission and ground truth (2,567 MCQ, 926 region
questions, 476 images with 2-6 boxes each) with a fixed seed, then times
``vida_eval.scoring.score`` and ``vida-eval score``. Prints the ratio to the
0.5 s in-process target.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vida_eval import scoring
from vida_eval.vocab import DISTORTION_TYPES, QUALITY_LEVELS

TARGET_S = 0.5


def box(rng):
    x, y = rng.randint(0, 700), rng.randint(0, 700)
    return [x, y, x + rng.randint(20, 300), y + rng.randint(20, 300)]


def jitter(b, rng):
    return [v + rng.randint(-25, 25) for v in b]


def build(seed=0):
    rng = random.Random(seed)
    images = [f"img_{i:03d}.jpg" for i in range(476)]
    meta, grounding, description, reg = [], [], [], []
    for i, im in enumerate(images):
        ds = [{"distortion": rng.choice(DISTORTION_TYPES), "severity": "Moderate", "coordinates": box(rng),
               "significance_score": rng.randint(0, 3)} for _ in range(rng.randint(2, 6))]
        meta.append({"id": i, "image": im, "mos": rng.uniform(1, 5), "level": rng.choice(QUALITY_LEVELS),
                     "distortions": ds})
        pred = [dict(d, coordinates=jitter(d["coordinates"], rng)) for d in ds if rng.random() < 0.8]
        pred += [{"distortion": rng.choice(DISTORTION_TYPES), "severity": "Slight", "coordinates": box(rng)}]
        grounding.append({"id": i, "image": im, "question_type": "distortion-detection", "distortions": pred})
        low = [dict(d, distortion=d["distortion"].lower()) for d in pred]
        description.append({"id": i, "image": im, "all_distortions": low, "key_distortions": low[:1],
                            "image_quality": rng.choice(QUALITY_LEVELS)})
    for q in range(926):
        m = meta[q % 476]
        reg.append({"id": q, "image": m["image"], "distortions": m["distortions"][:2]})
        grounding.append({"id": q, "image": m["image"], "question_type": "region-perception",
                          "distortions": [dict(d, coordinates=jitter(d["coordinates"], rng)) for d in m["distortions"][:2]]})
    mcq, perception = [], []
    for q in range(2567):
        cands = [f"candidate {k}" for k in range(4)]
        mcq.append({"id": q, "image": images[q % 476], "concern": "type", "question": "?", "candidates": cands,
                    "correct_ans": rng.choice(cands)})
        perception.append({"id": q, "image": images[q % 476], "candidates": cands, "pred_ans": rng.choice("ABCD") + "."})
    pred = {"perception.json": perception, "grounding.json": grounding, "description.json": description}
    gt = {"mcq.json": mcq, "reg-p_bench.json": reg, "bench_metadata.json": meta}
    return pred, gt


def main():
    pred, gt = build()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        report = scoring.score(pred, gt)
        times.append(time.perf_counter() - t)
    in_process = statistics.median(times)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in {**pred, **gt}.items():
            sub = "gt" if name in gt else "pred"
            Path(tmp, sub).mkdir(exist_ok=True)
            Path(tmp, sub, name).write_text(json.dumps(data))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vida_eval", "score", "--pred", f"{tmp}/pred", "--gt", f"{tmp}/gt",
                        "--out", f"{tmp}/scores.json"], check=True, capture_output=True)
        cli = time.perf_counter() - t
    print(f"Final Score {report.official()['Final Score']:.4f} on 476 images, 2567 MCQ, 1402 grounding answers")
    print(f"in-process score: {in_process * 1000:.1f} ms (median of 5); target {TARGET_S * 1000:.0f} ms; "
          f"ratio to target {in_process / TARGET_S:.3f}")
    print(f"CLI call (interpreter start, imports, JSON read and write): {cli * 1000:.1f} ms; "
          f"CLI / in-process {cli / in_process:.1f}x")


if __name__ == "__main__":
    main()
