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


def test_a_grouped_run_prints_beside_the_reference_with_its_differences(bench, tmp_path):
    release, majority = bench
    for name, s in (("untrained", scores(0, 0, 0)), ("trained", scores(0.5, majority + 0.01, 0.05)),
                    ("grouped", scores(0.6, majority + 0.02, 0.0))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.json").write_text(json.dumps(s))
    proc = subprocess.run([sys.executable, str(SCRIPT), *(str(tmp_path / n) for n in ("untrained", "trained",
                                                                                        "grouped")),
                           "--bench", str(release)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the grouped run has no region mAP
    assert "grouped - trained: Final Score +0.0600, Perception Accuracy +0.1000" in proc.stdout
    assert proc.stdout.count("PASS  trained") == 3 and "FAIL  grouped Region mAP" in proc.stdout


def test_same_budget_of_questions_for_the_grouped_set(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.learning_proof import grouped_args, same_budget

    # 4 questions per conversation: batch 32 questions -> 8 conversations, as many steps
    assert same_budget({"grouped": {"records": 400, "conversations": 100}}, 32, 3200) == (8, 3200)
    # 3 per conversation: 11 conversations (33 questions) a step, fewer steps for the same 102,400 questions
    assert same_budget({"grouped": {"records": 300, "conversations": 100}}, 32, 3200) == (11, 3103)
    prepared = tmp_path / "vida_synth"
    prepared.mkdir()
    (prepared / "prepare_report.json").write_text(json.dumps({"grouped": {"records": 400, "conversations": 100}}))
    args = grouped_args(prepared, ROOT / "configs" / "small_full.yaml")
    assert args == "dataset=vida_synth_grouped per_device_train_batch_size=8 max_steps=2600"
    # the one-question run's overrides: its batch and steps set the budget, the rest passes through
    proc = subprocess.run([sys.executable, str(SCRIPT), "--grouped-args", str(prepared),
                           str(ROOT / "configs" / "small_full.yaml"), "max_steps=800", "learning_rate=1e-3",
                           "dataset=vida_synth"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["dataset=vida_synth_grouped", "per_device_train_batch_size=8", "max_steps=800",
                                   "learning_rate=1e-3"]
    (prepared / "prepare_report.json").write_text("{}")
    with pytest.raises(SystemExit, match="prepare_report.json: no grouped"):
        grouped_args(prepared, ROOT / "configs" / "small_full.yaml")
