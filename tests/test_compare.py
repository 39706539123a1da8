"""vida-eval compare: runs side by side, and whether the last one learned."""

import json
import math

from vida_eval.cli import main
from vida_eval.compare import learned, metric_values, side_by_side, zeroed
from vida_eval.metrics import FINAL_SCORE_PARTS


def scores(value: float, corr: float | None = 0.3) -> dict:
    s = {k: value for k in FINAL_SCORE_PARTS}
    s["Final Score"] = value * len(FINAL_SCORE_PARTS)
    if corr is not None:
        s["correlation"] = {"SRCC": corr, "PLCC": corr / 2, "Correlation": 0.75 * corr}
    return s


def write_run(folder, s):
    folder.mkdir(parents=True)
    (folder / "scores.json").write_text(json.dumps(s))
    return str(folder)


def test_zeroed_names_every_exact_zero_and_a_missing_correlation():
    values = metric_values(scores(0.2, corr=None))
    assert math.isnan(values["SRCC"]) and set(zeroed(values)) == {"SRCC", "PLCC"}
    values = metric_values({**scores(0.2), "Region mAP": 0.0})
    assert zeroed(values) == ["Region mAP"]


def test_learned_needs_no_zero_and_a_higher_final_score():
    base = metric_values(scores(0.0, corr=0.01))
    assert learned(base, metric_values(scores(0.1))) == []
    assert learned(base, metric_values({**scores(0.1), "Key Distortion Accuracy": 0.0})) == [
        "Key Distortion Accuracy is zeroed"]
    problems = learned(metric_values(scores(0.5)), metric_values(scores(0.1)))
    assert len(problems) == 1 and problems[0].startswith("Final Score 0.6000 is not above 3.0000")


def test_side_by_side_prints_each_metric_and_the_change():
    lines = side_by_side({"untrained": metric_values(scores(0.0, 0.01)), "trained": metric_values(scores(0.25))})
    assert lines[0].split() == ["metric", "untrained", "trained", "change"]
    final = next(line for line in lines if line.startswith("Final Score"))
    assert final.split()[-3:] == ["0.0000", "1.5000", "+1.5000"]
    assert len(lines) == 1 + len(FINAL_SCORE_PARTS) + 1 + 2


def test_compare_cli_exit_status_and_messages(tmp_path, capsys):
    base = write_run(tmp_path / "untrained", scores(0.0, 0.01))
    good = write_run(tmp_path / "trained", scores(0.2))
    weak = write_run(tmp_path / "weak", {**scores(0.2), "Region mAP": 0.0})
    assert main(["compare", base, good, "--require-learning"]) == 0
    assert "LEARNED: trained is above untrained" in capsys.readouterr().out
    assert main(["compare", base, weak, "--require-learning"]) == 1
    assert "NOT LEARNED: weak: Region mAP is zeroed" in capsys.readouterr().out
    assert main(["compare", base, weak]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["compare", base, str(tmp_path / "empty")]) == 2
    assert "empty/scores.json: no scores" in capsys.readouterr().err
