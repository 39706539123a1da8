import json
import math
import random
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vida_eval import scoring
from vida_eval.cli import main

from . import official_reference as ref

LABELS = ["Noise", "Low clarity", "Motion blur", "No distortion"]


def _official(pred_p, pred_g, pred_d, mcq, reg, meta):
    report = scoring.score(
        {"perception.json": pred_p, "grounding.json": pred_g, "description.json": pred_d},
        {"mcq.json": mcq, "reg-p_bench.json": reg, "bench_metadata.json": meta},
    )
    return report


def assert_same_as_reference(pred_p, pred_g, pred_d, mcq, reg, meta):
    ours = _official(pred_p, pred_g, pred_d, mcq, reg, meta).official()
    theirs = ref.official_scores(pred_p, pred_g, pred_d, mcq, reg, meta)
    for k in theirs:
        assert math.isclose(ours[k], theirs[k], abs_tol=1e-9), (k, ours[k], theirs[k])


# ----------------------------------------------------- hand-made submissions

def tiny_bench():
    mcq = [
        {"id": i, "image": f"im{i % 2}.jpg", "concern": c, "question": "q", "candidates": ["w", "x", "y", "z"],
         "correct_ans": ans}
        for i, (c, ans) in enumerate([("type", "x"), ("position", "y"), ("type", "w"), ("severity", "z")])
    ]
    meta = [
        {"id": 0, "image": "im0.jpg", "mos": 2.5, "level": "poor",
         "distortions": [{"distortion": "Noise", "severity": "Moderate", "coordinates": [0, 0, 100, 100],
                          "significance_score": 3},
                         {"distortion": "Low clarity", "severity": "Slight", "coordinates": [200, 200, 400, 400],
                          "significance_score": 1}]},
        {"id": 1, "image": "im1.jpg", "mos": 4.1, "level": "good", "distortions": []},
    ]
    reg = [{"id": 0, "image": "im0.jpg", "distortions": [
        {"distortion": "Noise", "severity": "Moderate", "coordinates": [0, 0, 100, 100]}]},
        {"id": 1, "image": "im1.jpg", "distortions": [{"distortion": "No distortion"}]}]
    return mcq, reg, meta


def perfect_predictions(mcq, reg, meta):
    p = [dict(q, pred_ans="ABCD"[q["candidates"].index(q["correct_ans"])] + ".") for q in mcq]
    for r in p:
        r.pop("correct_ans")
    g = [{"id": r["id"], "image": r["image"], "question_type": "region-perception",
          "distortions": [d for d in r["distortions"] if d["distortion"] != "No distortion"]} for r in reg]
    g += [{"id": m["id"], "image": m["image"], "question_type": "distortion-detection",
           "distortions": m["distortions"]} for m in meta]
    d = [{"id": m["id"], "image": m["image"], "image_quality": m["level"],
          "all_distortions": [dict(x, distortion=x["distortion"].lower()) for x in m["distortions"]],
          "key_distortions": [x for x in m["distortions"][:1]]} for m in meta]
    return p, g, d


def test_perfect_submission_scores_six():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    report = _official(p, g, d, mcq, reg, meta)
    # Distortion mAP: the region box is a duplicate of a detection box in im0 -> its 2nd copy is a FP.
    assert report.official()["Perception Accuracy"] == 1.0
    assert report.official()["Region mAP"] == 1.0
    assert report.official()["Description mAP"] == 1.0
    assert report.official()["Key Distortion Accuracy"] == 1.0
    assert report.official()["Image Quality Accuracy"] == 1.0
    assert not [x for x in report.diagnostics if x.severity == "zeroes"]
    assert_same_as_reference(p, g, d, mcq, reg, meta)


def test_one_empty_answer_zeroes_perception_and_is_reported():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    p[2]["pred_ans"] = "   "
    report = _official(p, g, d, mcq, reg, meta)
    r = report.results["Perception Accuracy"]
    assert r.official == 0.0 and r.counted_wrong == 0.75
    flagged = [x for x in r.diagnostics if x.severity == "zeroes"]
    assert len(flagged) == 1 and flagged[0].record == 2 and flagged[0].record_id == 2
    assert report.to_dict()["if_flagged_records_counted_wrong"]["Perception Accuracy"] == 0.75
    assert_same_as_reference(p, g, d, mcq, reg, meta)


def test_misread_letter_is_warned():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    p[0]["pred_ans"] = "Answer: B"  # officially 'A' -> 'w', wrong
    r = _official(p, g, d, mcq, reg, meta).results["Perception Accuracy"]
    assert r.official == 0.75
    assert any("reads 'A'" in x.message for x in r.diagnostics)


def test_key_distortion_without_box_zeroes_the_metric():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    d[0]["key_distortions"] = [{"distortion": "noise", "coordinates": None}]
    r = _official(p, g, d, mcq, reg, meta).results["Key Distortion Accuracy"]
    assert r.official == 0.0 and r.counted_wrong == 0.0
    d[0]["key_distortions"].append({"distortion": "Noise", "coordinates": [0, 0, 100, 100]})
    r = _official(p, g, d, mcq, reg, meta).results["Key Distortion Accuracy"]
    assert r.official == 0.0 and r.counted_wrong == 0.5
    assert_same_as_reference(p, g, d, mcq, reg, meta)


def test_none_class_zeroes_region_map():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    g[0]["distortions"].append({"distortion": None, "coordinates": [1, 1, 5, 5]})
    r = _official(p, g, d, mcq, reg, meta).results["Region mAP"]
    assert r.official == 0.0 and r.counted_wrong == 1.0
    assert_same_as_reference(p, g, d, mcq, reg, meta)


def test_unequal_lengths_zero_perception():
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    r = _official(p[:-1], g, d, mcq, reg, meta).results["Perception Accuracy"]
    assert r.official == 0.0 and r.counted_wrong == 0.75


# ------------------------------------------------- random records vs reference

boxes = st.lists(st.integers(0, 50), min_size=4, max_size=4).map(lambda v: [v[0], v[1], v[0] + v[2], v[1] + v[3]])
odd_boxes = st.one_of(boxes, boxes, boxes, st.just([]), st.just(None), st.lists(st.integers(0, 9), max_size=5))
names = st.sampled_from(LABELS + ["noise", "low_clarity"])
odd_names = st.one_of(names, names, names, st.just(None))
images = st.sampled_from(["a.jpg", "b.jpg", "c.jpg"])


@st.composite
def submissions(draw, odd=False):
    bx = odd_boxes if odd else boxes
    nm = odd_names if odd else names
    dist = st.fixed_dictionaries({"distortion": nm, "coordinates": bx})
    meta = [{"id": i, "image": im, "mos": draw(st.floats(1, 5)), "level": draw(st.sampled_from(["bad", "good"])),
             "distortions": draw(st.lists(st.fixed_dictionaries(
                 {"distortion": names, "coordinates": boxes, "significance_score": st.integers(0, 3)}), max_size=4))}
            for i, im in enumerate(["a.jpg", "b.jpg", "c.jpg"])]
    reg = draw(st.lists(st.fixed_dictionaries({"image": images, "distortions": st.lists(
        st.fixed_dictionaries({"distortion": names, "coordinates": boxes}), max_size=3)}), max_size=5))
    n = draw(st.integers(1, 5))
    mcq = [{"id": i, "candidates": ["p", "q", "r"], "correct_ans": draw(st.sampled_from("pqr")), "concern": "type"}
           for i in range(n)]
    answers = st.sampled_from(["A", "B.", "C", " b", "", "D", "@"]) if odd else st.sampled_from(["A", "B.", "C"])
    pred_p = [{"id": q["id"], "candidates": q["candidates"], "pred_ans": draw(answers)} for q in mcq]
    draw(st.randoms()).shuffle(pred_p)
    qtypes = st.sampled_from(["region-perception", "distortion-detection"] + (["other"] if odd else []))
    pred_g = draw(st.lists(st.fixed_dictionaries(
        {"image": images, "question_type": qtypes, "distortions": st.lists(dist, max_size=4)}), max_size=6))
    pred_d = draw(st.lists(st.fixed_dictionaries(
        {"image": images, "all_distortions": st.lists(dist, max_size=4), "key_distortions": st.lists(dist, max_size=2),
         "image_quality": st.sampled_from(["bad", "good", "unknown"])}), max_size=4))
    return pred_p, pred_g, pred_d, mcq, reg, meta


@settings(max_examples=250, deadline=None)
@given(submissions())
def test_valid_submissions_match_reference(sub):
    assert_same_as_reference(*sub)


@settings(max_examples=250, deadline=None)
@given(submissions(odd=True))
def test_malformed_submissions_match_reference_and_explain_zeros(sub):
    assert_same_as_reference(*sub)
    report = _official(*sub)
    for name, r in report.results.items():
        if r.official == 0.0 and r.counted_wrong != 0.0:
            assert r.zeroed, name


# ------------------------------------------------------------ CLI and files

def write_gt(folder, mcq, reg, meta):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("mcq.json", mcq), ("reg-p_bench.json", reg), ("bench_metadata.json", meta)):
        (folder / name).write_text(json.dumps(data))


def write_pred(folder, p, g, d):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("perception.json", p), ("grounding.json", g), ("description.json", d)):
        (folder / name).write_text(json.dumps(data))


def test_cli_score_folder_and_zip(tmp_path, capsys):
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    write_gt(tmp_path / "gt", mcq, reg, meta)
    write_pred(tmp_path / "pred", p, g, d)
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--out", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["Perception Accuracy"] == 1.0 and "diagnostics" in scores
    assert "Final Score" in capsys.readouterr().out
    assert main(["submit", "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "sub.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert sorted(zf.namelist()) == ["description.json", "grounding.json", "perception.json"]
    assert main(["score", "--pred", str(tmp_path / "sub.zip"), "--gt", str(tmp_path / "gt"),
                 "--out", str(tmp_path / "z.json")]) == 0
    assert json.loads((tmp_path / "z.json").read_text())["Final Score"] == scores["Final Score"]


@pytest.mark.parametrize("case", ["not_json", "not_list", "missing_gt", "not_zip", "evil_zip", "no_folder"])
def test_cli_unusable_input_exits_2_naming_the_file(tmp_path, capsys, case):
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_gt(gt, mcq, reg, meta)
    write_pred(pred, p, g, d)
    bad = pred / "perception.json"
    if case == "not_json":
        bad.write_text("{oops")
    elif case == "not_list":
        bad.write_text('{"id": 1}')
    elif case == "missing_gt":
        (gt / "mcq.json").unlink()
        bad = gt / "mcq.json"
    elif case == "not_zip":
        pred = bad = tmp_path / "x.zip"
        pred.write_text("plain text")
    elif case == "evil_zip":
        pred = bad = tmp_path / "evil.zip"
        with zipfile.ZipFile(pred, "w") as zf:
            zf.writestr("../perception.json", json.dumps(p))
    else:
        pred = bad = tmp_path / "nowhere"
    assert main(["score", "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert str(bad.name) in err and "Traceback" not in err


def test_cli_parse_adds_official_fields(tmp_path):
    raw = [{"id": 0, "image": "a.jpg", "question": "Please provide the bounding box coordinates of all distortions "
            "in the image.", "pred_ans": "Noise:\n<|object_ref_start|>Severe noise<|object_ref_end|>"
            "<|box_start|>(1,2),(3,4)<|box_end|><|im_end|>"}]
    (tmp_path / "in.json").write_text(json.dumps(raw))
    assert main(["parse", "--task", "grounding", str(tmp_path / "in.json"), str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out[0]["question_type"] == "distortion-detection"
    assert out[0]["distortions"] == [{"distortion": "Noise", "severity": "Severe", "coordinates": [1, 2, 3, 4]}]


# ---------------------------------------------------------------- fixtures

def gt_from_baseline(baseline, seed=0):
    """Ground truth built by hand from the baseline's own predictions, so the numbers are known."""
    rng = random.Random(seed)
    perception = baseline("perception.json")
    mcq = []
    for q in perception:
        letter = ord(q["pred_ans"].strip()[0]) - 65
        right = q["id"] % 3 != 0  # two thirds answered correctly
        ans = q["candidates"][letter] if right else q["candidates"][(letter + 1) % len(q["candidates"])]
        mcq.append({k: q[k] for k in ("id", "image", "concern", "question", "candidates")} | {"correct_ans": ans})
    rng.shuffle(mcq)
    description = baseline("description.json")
    meta = []
    for i, r in enumerate(description):
        level = r["image_quality"] if i % 2 == 0 else "excellent"
        meta.append({"id": r["id"], "image": r["image"], "mos": 3.0, "level": level, "distortions": []})
    reg = [{"id": r["id"], "image": r["image"], "distortions": []} for r in baseline("grounding.json")
           if r["question_type"] == "region-perception"]
    return mcq, reg, meta


def test_fixture_scores_match_hand_derived_numbers(baseline):
    mcq, reg, meta = gt_from_baseline(baseline)
    pred = {n: baseline(n) for n in ("perception.json", "grounding.json", "description.json")}
    report = scoring.score(pred, {"mcq.json": mcq, "reg-p_bench.json": reg, "bench_metadata.json": meta})
    official = report.official()
    n = len(mcq)
    assert official["Perception Accuracy"] == pytest.approx(sum(1 for q in mcq if q["id"] % 3 != 0) / n, abs=1e-12)
    assert official["Image Quality Accuracy"] == pytest.approx(
        (len(meta) + 1) // 2 / len(meta) + sum(1 for i, r in enumerate(pred["description.json"])
                                               if i % 2 and r["image_quality"] == "excellent") / len(meta), abs=1e-12)
    # No GT box anywhere: every mAP is 0 and no key distortion is scored.
    assert official["Region mAP"] == official["Distortion mAP"] == official["Description mAP"] == 0.0
    assert official["Key Distortion Accuracy"] == 0.0
    assert_same_as_reference(pred["perception.json"], pred["grounding.json"], pred["description.json"], mcq, reg, meta)


def test_fixture_with_predictions_as_ground_truth(baseline):
    """GT = the baseline's own detection boxes: Distortion mAP is then computable on paper per class."""
    pred = {n: baseline(n) for n in ("perception.json", "grounding.json", "description.json")}
    mcq, _, _ = gt_from_baseline(baseline)
    meta = [{"id": r["id"], "image": r["image"], "mos": 1 + (r["id"] % 5), "level": "poor",
             "distortions": [dict(x, significance_score=1) for x in r["distortions"]]}
            for r in pred["grounding.json"] if r["question_type"] == "distortion-detection"]
    reg = [{"id": r["id"], "image": r["image"], "distortions": r["distortions"]}
           for r in pred["grounding.json"] if r["question_type"] == "region-perception"]
    report = scoring.score(pred, {"mcq.json": mcq, "reg-p_bench.json": reg, "bench_metadata.json": meta})
    assert not [x for x in report.diagnostics if x.severity == "zeroes" and x.record is not None]
    assert 0 < report.official()["Distortion mAP"] < 1
    assert_same_as_reference(pred["perception.json"], pred["grounding.json"], pred["description.json"], mcq, reg, meta)


def test_submit_validates_the_baseline_submission(baseline, tmp_path):
    from .conftest import BASELINE

    assert main(["submit", "--pred", str(BASELINE), "--out", str(tmp_path / "s.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert sorted(zf.namelist()) == ["description.json", "grounding.json", "perception.json"]
        assert len(json.loads(zf.read("perception.json"))) == 2567
