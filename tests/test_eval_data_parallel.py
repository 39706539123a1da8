"""bench/eval_data_parallel.py: speed-ups and answer agreement between a one-GPU and an N-GPU run."""

import importlib.util

import pytest

from .conftest import ROOT

spec = importlib.util.spec_from_file_location("eval_data_parallel", ROOT / "bench" / "eval_data_parallel.py")
edp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edp)


def timings(**seconds):
    out = {task: {"requests": 10, "seconds": s} for task, s in seconds.items()}
    out["total_seconds"] = sum(seconds.values()) + 30.0  # engine start-up
    return out


def test_speedups_per_task_and_total():
    rows = edp.speedups(timings(perception=20.0, scoring=4.0), timings(perception=10.0, scoring=4.0))
    assert [r[0] for r in rows] == ["perception", "scoring", "total"]
    assert rows[0][4] == pytest.approx(2.0)
    assert rows[1][4] == pytest.approx(1.0)
    assert rows[2] == ("total", 20, 54.0, 44.0, pytest.approx(54.0 / 44.0))


def test_agreement_matches_by_id_and_tolerates_rounding_of_mos():
    one = {"perception": [{"id": 0, "pred_ans": "A."}, {"id": 1, "pred_ans": "B."}, {"id": 2, "pred_ans": "C."}],
           "scoring": [{"id": 0, "pred_mos": 3.0}, {"id": 1, "pred_mos": 3.0}]}
    many = {"perception": [{"id": 1, "pred_ans": "B."}, {"id": 0, "pred_ans": "D."}],  # id 2 missing
            "scoring": [{"id": 1, "pred_mos": 3.0 + 5e-4}, {"id": 0, "pred_mos": 3.1}]}
    assert edp.agreement(one, many) == {"perception": (1, 3), "scoring": (1, 2)}
