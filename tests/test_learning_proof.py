"""bench/learning_proof.py: the untrained and trained scores side by side, and its three checks."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from vida_eval.data.synth import synthesize

from .conftest import ROOT

SCRIPT = ROOT / "bench" / "learning_proof.py"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    release = synthesize(tmp_path_factory.mktemp("proof") / "release", images=1, bench_images=16, seed=2)
    meta = json.loads((release / "val" / "ViDA-Bench" / "ground_truth" / "bench_metadata.json").read_text())
    majority = Counter(m["level"] for m in meta).most_common(1)[0][1] / len(meta)
    return release, majority


def run(tmp_path, release, untrained, trained):
    for name, scores in (("untrained", untrained), ("trained", trained)):
        if scores is not None:
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "scores.json").write_text(json.dumps(scores))
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "untrained"), str(tmp_path / "trained"),
                           "--bench", str(release)], capture_output=True, text=True, timeout=120)


def scores(perception, quality, region):
    return {"Final Score": perception + quality + region, "Perception Accuracy": perception,
            "Region mAP": region, "Image Quality Accuracy": quality}


def test_passes_only_when_all_three_signs_are_there(bench, tmp_path):
    release, majority = bench
    zero = scores(0.0, 0.0, 0.0)
    good = run(tmp_path, release, zero, scores(0.6, majority + 0.01, 0.05))
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"share {majority:.4f}" in good.stdout and good.stdout.count("PASS") == 3
    for weak in (scores(0.34, 1.0, 0.5), scores(0.9, majority, 0.5), scores(0.9, 1.0, 0.0)):
        proc = run(tmp_path, release, zero, weak)
        assert proc.returncode == 1 and proc.stdout.count("FAIL") == 1, proc.stdout


def test_missing_scores_are_named(bench, tmp_path):
    release, _ = bench
    proc = run(tmp_path, release, scores(0, 0, 0), None)
    assert proc.returncode == 2 and "trained/scores.json" in proc.stderr
