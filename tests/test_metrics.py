import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vida_eval import metrics
from vida_eval.metrics.accuracy import key_distortion_accuracy

from . import official_reference as ref


def test_iou_has_no_plus_one_and_touching_boxes_share_nothing():
    assert metrics.box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert metrics.box_iou([[0, 0, 10, 10]], [[10, 0, 20, 10]])[0, 0] == 0.0
    assert metrics.box_iou([[10, 10, 0, 0]], [[0, 0, 10, 10]])[0, 0] == 0.0  # inverted box
    assert metrics.box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0  # empty union


def test_ap_worked_on_paper():
    # Two GT boxes; detections ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Envelope: 1 up to recall 1/2, then 2/3: AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    gt = [("img", [0, 0, 10, 10]), ("img", [20, 20, 30, 30])]
    pred = [("img", [0, 0, 10, 10]), ("img", [50, 50, 60, 60]), ("img", [20, 20, 30, 30])]
    ap, tp = metrics.detection_ap(gt, pred)
    assert list(tp) == [True, False, True]
    assert ap == pytest.approx(5 / 6, abs=1e-12)


def test_equal_confidence_order_decides():
    gt = [("a", [0, 0, 10, 10])]
    # A duplicate of the matched box is a false positive; its rank decides the AP.
    first = metrics.detection_ap(gt, [("a", [0, 0, 10, 10]), ("a", [0, 0, 10, 10])])[0]
    second = metrics.detection_ap(gt, [("a", [0, 0, 10, 10]), ("a", [0, 0, 10, 10])][::-1])[0]
    assert first == 1.0 and second == 1.0
    wrong_first = metrics.detection_ap(gt, [("a", [50, 50, 60, 60]), ("a", [0, 0, 10, 10])])[0]
    assert wrong_first == pytest.approx(0.5)


def test_best_iou_box_even_if_already_matched():
    # The second detection's best box is the matched one: FP, although another GT box overlaps it at IoU 0.5.
    gt = [("a", [0, 0, 10, 10]), ("a", [0, 0, 10, 20])]
    pred = [("a", [0, 0, 10, 10]), ("a", [0, 0, 10, 10])]
    ap, tp = metrics.detection_ap(gt, pred)
    assert list(tp) == [True, False]
    assert ap == pytest.approx(0.5)


def test_perfect_predictions_score_one():
    gt = {"a": [([0, 0, 10, 10], "Noise"), ([5, 5, 50, 50], "Blur")], "b": [([1, 1, 9, 9], "Noise")]}
    assert metrics.mean_average_precision(gt, gt).value == 1.0


def test_false_positive_of_a_new_class_lowers_map_by_the_expected_amount():
    gt = {"a": [([0, 0, 10, 10], "Noise"), ([5, 5, 50, 50], "Blur")]}
    pred = {"a": [([0, 0, 10, 10], "Noise"), ([5, 5, 40, 50], "Blur")]}
    before = metrics.mean_average_precision(gt, pred).value
    pred["a"].append(([0, 0, 5, 5], "Overexposure"))
    after = metrics.mean_average_precision(gt, pred)
    assert after.per_class["Overexposure"].ap == 0.0
    assert after.value == pytest.approx(before * 2 / 3, abs=1e-12)


def test_map_is_zero_when_a_side_is_empty():
    gt = {"a": [([0, 0, 10, 10], "Noise")]}
    assert metrics.mean_average_precision(gt, {}).value == 0.0
    assert metrics.mean_average_precision({}, gt).value == 0.0


def test_key_distortion_needs_max_significance_and_strict_iou():
    gt = {"a": [("Noise", [0, 0, 10, 10], 3), ("Low clarity", [0, 0, 10, 10], 1)]}
    pred = [("a", [("noise", [0, 0, 10, 10]), ("low_clarity", [0, 0, 10, 10]), ("Noise", [0, 0, 10, 5])])]
    value, correct, total = key_distortion_accuracy(pred, gt)
    # IoU of the third is exactly 0.5: not > 0.5.
    assert (correct, total) == (1, 3) and value == pytest.approx(1 / 3)


def test_final_score_is_the_plain_sum():
    parts = dict(zip(metrics.FINAL_SCORE_PARTS, [0.7, 0.3, 0.1, 0.15, 0.37, 0.76]))
    assert metrics.final_score(parts) == pytest.approx(sum(parts.values()), abs=1e-15)


def test_correlation():
    c = metrics.correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["SRCC"] == pytest.approx(1.0) and c["Correlation"] == pytest.approx((1 + c["PLCC"]) / 2)


# ----------------------------------------------------------- property tests

LABELS = ["Noise", "Low clarity", "Motion blur"]
coord = st.integers(0, 60)


@st.composite
def box_st(draw):
    x1, y1 = draw(coord), draw(coord)
    return [x1, y1, x1 + draw(st.integers(0, 40)), y1 + draw(st.integers(0, 40))]


images = st.sampled_from(["i0", "i1", "i2"])
labelled = st.lists(st.tuples(images, box_st(), st.sampled_from(LABELS)), max_size=14)


def _to_map(items):
    out = {}
    for image, box, label in items:
        out.setdefault(image, []).append((box, label))
    return out


@settings(max_examples=300, deadline=None)
@given(labelled, labelled)
def test_map_equals_reference(gt_items, pred_items):
    gt, pred = _to_map(gt_items), _to_map(pred_items)
    ours = metrics.mean_average_precision(gt, pred).value
    theirs = ref.mean_ap(gt, pred)
    assert math.isclose(ours, theirs, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(labelled)
def test_map_is_between_zero_and_one_and_perfect_is_one(items):
    gt = _to_map(items)
    assert 0.0 <= metrics.mean_average_precision(gt, gt).value <= 1.0
    # Distinct non-degenerate boxes match themselves (a repeated GT box is matched once only:
    # the official matching always takes the first box of best IoU).
    distinct = {(i, tuple(b), lbl) for i, b, lbl in items if b[2] > b[0] and b[3] > b[1]}
    good = _to_map([(i, list(b), lbl) for i, b, lbl in sorted(distinct)])
    if good:
        assert metrics.mean_average_precision(good, good).value == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(box_st(), min_size=1, max_size=6), st.lists(box_st(), min_size=1, max_size=6))
def test_iou_matrix_equals_scalar_reference(a, b):
    m = metrics.box_iou(a, b)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            assert m[i, j] == ref.iou(x, y)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=30), st.integers(0, 30))
def test_ap_bounds(flags, extra_gt):
    num_gt = sum(flags) + extra_gt
    ap = metrics.average_precision(flags, num_gt)
    assert 0.0 <= ap <= 1.0
    if num_gt and all(flags) and extra_gt == 0 and flags:
        assert ap == 1.0
    assert np.isfinite(ap)
