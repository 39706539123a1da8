import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vida_eval import prompts
from vida_eval.cli import main
from vida_eval.data.layout import TRAIN_SUBSETS, Release
from vida_eval.data.readers import ReadError, iter_json_array
from vida_eval.data.synth import synthesize
from vida_eval.data.synth_texts import describe_content, description_answer, detection_answer, region_answer


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    assert main(["data", "synth", str(root), "--images", "24", "--bench-images", "12", "--seed", "3"]) == 0
    return root


def test_synth_writes_the_whole_layout(release):
    r = Release(release)
    for name in TRAIN_SUBSETS:
        assert r.subset_file(name).is_file(), name
        assert "(" in r.subset_file(name).parent.name  # folder names carry the release's suffixes
    combined = json.loads(r.combined.read_text())
    assert len(combined) == sum(len(r.subset_file(n).read_text().splitlines()) for n in TRAIN_SUBSETS)
    meta = json.loads(r.train_metadata.read_text())
    assert len(meta) == 24 and all((r.train_images / m["image"]).is_file() for m in meta)
    for name in ("mcq.json", "reg-p_ques.json", "benchmark.json"):
        assert json.loads((r.bench_release / name).read_text())
    gt = json.loads((r.bench_gt / "bench_metadata.json").read_text())
    levels = {g["level"] for g in gt}
    assert levels <= {"bad", "poor", "fair", "good", "excellent"}
    # MCQ ground truth holds the candidate's text, not a letter.
    mcq = json.loads((r.bench_gt / "mcq.json").read_text())
    assert all(q["correct_ans"] in q["candidates"] for q in mcq)
    assert {q["concern"] for q in mcq} <= {"position", "type", "significance", "severity"}


def test_synth_is_deterministic(tmp_path):
    synthesize(tmp_path / "a", images=6, bench_images=3, seed=7)
    synthesize(tmp_path / "b", images=6, bench_images=3, seed=7)
    synthesize(tmp_path / "c", images=6, bench_images=3, seed=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_synth_writes_the_same_release_with_any_number_of_workers(tmp_path):
    # Extra questions and exact sizes too: every per-image draw and every running id must survive the split.
    from vida_eval.data.sizes import VIDA_BENCH_SIZES

    sizes = {size: 1 for size in sorted(VIDA_BENCH_SIZES, key=lambda wh: wh[0] * wh[1])[:5]}
    for name, workers in (("one", 1), ("three", 3)):
        synthesize(tmp_path / name, images=7, bench_images=5, seed=12, sizes=sizes, questions=20, choice_share=0.7,
                   workers=workers)
    assert digest(tmp_path / "one") == digest(tmp_path / "three")
    assert len(list((tmp_path / "three" / "val" / "images").iterdir())) == 5


def test_distortions_change_pixels_only_inside_their_box():
    import numpy as np

    from vida_eval.data.distortions import APPLY, apply_distortion

    rng = np.random.default_rng(0)
    base = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    for name in APPLY:
        img = base.copy()
        apply_distortion(img, name, "Severe", (40, 30, 120, 90), np.random.default_rng(1))
        inside = img[30:90, 40:120].astype(int) - base[30:90, 40:120]
        outside = img.astype(int) - base
        outside[30:90, 40:120] = 0
        assert np.abs(inside).mean() > 2, name
        assert not outside.any(), name


# ----------------------------------------------------------------- oracle

def oracle_predictions(release: Path, bench_gt: Path | None = None) -> dict[str, list]:
    """Answers to every bench question, written from the ground truth in the model's textual format.

    *release*: a release root, or with *bench_gt* a bench's release folder."""
    if bench_gt is None:
        release, bench_gt = Release(release).bench_release, Release(release).bench_gt
    mcq = json.loads((release / "mcq.json").read_text())
    gt_mcq = {q["id"]: q for q in json.loads((bench_gt / "mcq.json").read_text())}
    reg_q = json.loads((release / "reg-p_ques.json").read_text())
    reg_gt = {q["id"]: q for q in json.loads((bench_gt / "reg-p_bench.json").read_text())}
    bench = json.loads((release / "benchmark.json").read_text())
    meta = {m["image"]: m for m in json.loads((bench_gt / "bench_metadata.json").read_text())}

    perception = [dict(q, pred_ans=prompts.OPTION_LETTERS[q["candidates"].index(gt_mcq[q["id"]]["correct_ans"])]
                       + ".<|im_end|>") for q in mcq]
    detection = [dict(b, question=prompts.DETECTION_QUESTION, question_type="distortion-detection",
                      pred_ans=detection_answer(meta[b["image"]]["distortions"]) + "<|im_end|>") for b in bench]
    region = [dict(q, question_type="region-perception", pred_ans=region_answer(
        [d for d in reg_gt[q["id"]]["distortions"] if d["distortion"] != "No distortion"]) + "<|im_end|>")
        for q in reg_q]

    content = describe_content([("a shape", (0, 0, 1, 1))], "a background")
    description = [dict(b, pred_ans=description_answer(content, meta[b["image"]]["distortions"],
                                                       meta[b["image"]]["level"]) + "<|im_end|>") for b in bench]
    return {"perception": perception, "detection": detection, "region": region, "description": description}


def run_parse_and_score(tmp: Path, release: Path, raw: dict[str, list], gt: Path | None = None) -> dict:
    pred = tmp / "pred"
    pred.mkdir(parents=True, exist_ok=True)
    for task, records in raw.items():
        (tmp / f"{task}_raw.json").write_text(json.dumps(records))
        assert main(["parse", "--task", task, str(tmp / f"{task}_raw.json"), str(pred / f"{task}.json")]) == 0
    out = tmp / "scores.json"
    assert main(["score", "--pred", str(pred), "--gt", str(gt or Release(release).bench_gt), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_oracle_scores_one_on_every_metric(release, tmp_path):
    o = oracle_predictions(release)
    raw = {"perception": o["perception"], "grounding": o["detection"] + o["region"], "description": o["description"]}
    scores = run_parse_and_score(tmp_path / "all", release, raw)
    for key in ("Perception Accuracy", "Region mAP", "Description mAP", "Key Distortion Accuracy",
                "Image Quality Accuracy"):
        assert scores[key] == 1.0, (key, scores[key])
    assert not [d for d in scores["diagnostics"] if d["severity"] == "zeroes"]
    # Distortion mAP pools the boxes of BOTH grounding question kinds against bench_metadata: the region
    # answers repeat (clipped) boxes the detection answers already matched, and the official scorer counts
    # those repeats as false positives. On detection answers alone the oracle is perfect.
    assert 0.0 < scores["Distortion mAP"] < 1.0
    detection_only = run_parse_and_score(tmp_path / "det", release, {"grounding": o["detection"]})
    assert detection_only["Distortion mAP"] == 1.0


# ------------------------------------------------------- check and prepare

def corrupt(release: Path) -> dict[str, str]:
    """Damage a copy of a synthetic release in every documented way; returns name -> expected reason part."""
    r = Release(release)
    mcq = r.subset_file("vida_p_mcq")
    lines = mcq.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    recs[0]["image"] = "does_not_exist.jpg"
    recs[1]["image"] = "../../etc/passwd"
    recs[2]["conversations"][0]["value"] = recs[2]["conversations"][0]["value"].replace("<image>\n", "")  # repaired
    recs[3]["conversations"][0]["value"] = "<image><image>" + recs[3]["conversations"][0]["value"]
    recs[4]["conversations"][1]["value"] = "   "
    recs[5]["conversations"] = recs[5]["conversations"][::-1]
    recs[6]["id"] = recs[7]["id"]  # repaired (renamed)
    out = [json.dumps(x) for x in recs]
    out[8] = out[8][:-5]  # broken JSON
    mcq.write_text("\n".join(out) + "\n")
    det = r.subset_file("vida_g_dist_detect")
    recs = [json.loads(x) for x in det.read_text().splitlines()]
    recs[0]["conversations"][1]["value"] = ("Noise:\n<|object_ref_start|>Moderate noise<|object_ref_end|>"
                                            "<|box_start|>(900,10),(1200,-5)<|box_end|>")
    recs[1]["conversations"][1]["value"] = ("Sparkles:\n<|object_ref_start|>Moderate sparkles<|object_ref_end|>"
                                            "<|box_start|>(1,1),(50,50)<|box_end|>")
    det.write_text("\n".join(json.dumps(x) for x in recs) + "\n")
    (r.train_images / json.loads(det.read_text().splitlines()[2])["image"]).write_bytes(b"not an image")
    return {
        "vida_p_mcq:1": "not found", "vida_p_mcq:2": "escapes the image folder",
        "vida_p_mcq:4": "3 <image> tags for 1 images", "vida_p_mcq:5": "is empty",
        "vida_p_mcq:6": "roles must alternate", "vida_p_mcq:9": "JSON syntax",
        "vida_g_dist_detect:3": "unreadable",
    }


def test_prepare_reports_and_repairs_every_kind_of_damage(tmp_path):
    root = synthesize(tmp_path / "rel", images=8, bench_images=2, seed=1)
    expected = corrupt(root)
    out = tmp_path / "dd" / "vida"
    assert main(["data", "check", str(root)]) == 1
    assert main(["data", "prepare", "--release", str(root), "--out", str(out)]) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    rejects = {}
    for name in ("vida_p_mcq", "vida_g_dist_detect"):
        for line in (out / "rejects" / f"{name}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            rejects[f"{name}:{rec['line']}"] = rec["reason"]
            assert rec["file"].endswith(".jsonl")
    for where, reason in expected.items():
        assert reason in rejects.get(where, ""), (where, rejects.get(where))
    mcq = report["vida_p_mcq"]
    total = len(Release(root).subset_file("vida_p_mcq").read_text().splitlines())
    assert mcq["kept"] + mcq["rejected"] == total  # nothing disappears
    assert mcq["repairs"] == {"<image> tag added": 1, "duplicate id renamed": 1}
    det = report["vida_g_dist_detect"]
    assert det["repairs"] == {"box clamped to 0..1000": 1, "inverted box swapped": 1}
    assert det["warnings"] == {"unknown distortion name 'sparkles'": 1}
    kept = [json.loads(x) for x in (out / "vida_g_dist_detect.jsonl").read_text().splitlines()]
    assert "(900,0),(1000,10)" in kept[0]["conversations"][1]["value"]
    assert all((tmp_path / "dd" / img).is_file() for rec in kept for img in rec["images"])


def test_combined_json_is_streamed_with_line_numbers(tmp_path):
    records = [{"id": i, "conversations": [{"from": "human", "value": "x" * (i % 97)}]} for i in range(500)]
    path = tmp_path / "combined.json"
    path.write_text(json.dumps(records, indent=2))
    got = list(iter_json_array(path, chunk=257))
    assert [r for _, r in got] == records
    text = path.read_text().splitlines()
    assert all(text[line - 1].strip() == "{" for line, _ in got)
    path.write_text(json.dumps(records[:3], indent=2).replace('"id": 2', '"id": 2,,'))
    *ok, (line, err) = list(iter_json_array(path, chunk=64))
    assert len(ok) == 2 and isinstance(err, ReadError) and err.kind == "JSON syntax"


def test_check_on_missing_release_exits_2(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_prepared_combined_file_mixes_every_subset_from_its_first_lines(release, tmp_path):
    out = tmp_path / "data" / "vida"
    assert main(["data", "prepare", "--release", str(release), "--out", str(out)]) == 0
    subset_of = {}
    for name in TRAIN_SUBSETS:
        for line in (out / f"{name}.jsonl").read_text().splitlines():
            subset_of[line] = name
    combined = (out / "vida_combined.jsonl").read_text().splitlines()
    assert sorted(combined) == sorted(subset_of)  # the same records, none lost or doubled
    assert combined != [line for name in TRAIN_SUBSETS for line in (out / f"{name}.jsonl").read_text().splitlines()]
    # What max_samples keeps (the first lines) samples nearly every subset, not the first subset alone.
    head = {subset_of[line] for line in combined[: len(combined) // 5]}
    assert len(head) >= len(TRAIN_SUBSETS) - 2
    # The order is fixed: a second prepare writes the same file.
    again = tmp_path / "again" / "vida"
    assert main(["data", "prepare", "--release", str(release), "--out", str(again)]) == 0
    assert (again / "vida_combined.jsonl").read_bytes() == (out / "vida_combined.jsonl").read_bytes()


# ----------------------------------------------------------- photo scenes

def _visible(kind: str, name: str, n: int = 40) -> float:
    """Median share of a box's pixels whose grey level a Slight *name* changes by more than 4 (bench's measure)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from distortion_visibility import changed_share

    from vida_eval.data.sizes import SMALL_SIZES

    return float(np.median(changed_share(kind, n, list(SMALL_SIZES))[(name, "Slight")]))


def test_photo_scenes_show_the_high_frequency_distortions():
    """On photo scenes a slight blur, ringing or aliasing changes a large share of its box (texture everywhere); on
    the flat shape scenes it changes the edges only."""
    for name in ("Out of focus blur", "Low clarity", "Motion blur", "Edge ringing effect", "Edge aliasing effect"):
        photos, shapes = _visible("photos", name), _visible("shapes", name)
        assert photos > 0.2 and photos > 2 * shapes, (name, photos, shapes)


def test_photo_scene_fills_the_image_with_described_photos():
    from vida_eval.data.photos import PHOTOS
    from vida_eval.data.synth import make_scene

    for width, height in ((4160, 3120), (333, 500), (1280, 720)):
        scene = make_scene(np.random.default_rng(1), width, height, "photos")
        assert scene.image.shape == (height, width, 3)
        assert {o for o, _ in scene.objects} <= {p.shows for p in PHOTOS}
        area = sum((x2 - x1) * (y2 - y1) for _, (x1, y1, x2, y2) in scene.objects)
        assert area == 1000 * 1000  # the cells tile the image
        assert scene.image.std() > 20


def test_synth_without_photos_says_what_to_install(tmp_path, monkeypatch, capsys):
    from vida_eval.data import photos

    monkeypatch.setattr(photos, "_package_folder", lambda package: None)
    photos.load_photos.cache_clear()
    try:
        assert main(["data", "synth", str(tmp_path / "r"), "--images", "1", "--bench-images", "1"]) == 2
        assert "pip install scikit-image" in capsys.readouterr().err
        assert main(["data", "synth", str(tmp_path / "s"), "--images", "1", "--bench-images", "1",
                     "--scenes", "shapes"]) == 0
    finally:
        photos.load_photos.cache_clear()


def test_synth_asks_as_many_questions_per_image_as_asked(tmp_path):
    from collections import Counter

    from vida_eval.data.synth_texts import region_truth

    root = tmp_path / "r"
    assert main(["data", "synth", str(root), "--images", "6", "--bench-images", "2", "--seed", "4",
                 "--sizes", "320x240", "--questions-per-image", "45"]) == 0
    r = Release(root)
    records = [json.loads(x) for n in TRAIN_SUBSETS for x in r.subset_file(n).read_text().splitlines()]
    per_image = Counter(rec["image"] for rec in records)
    assert len(per_image) == 6 and set(per_image.values()) == {45}
    assert len({rec["id"] for rec in records}) == len(records)
    meta = {m["image"]: m for m in json.loads(r.train_metadata.read_text())}
    for rec in records:  # every added region question answers from the image's own boxes
        if "_reg" in rec["id"]:
            region = [int(v) for v in rec["conversations"][0]["value"].split("(")[1].replace(")", ",").split(",")[:2]]
            region += [int(v) for v in rec["conversations"][0]["value"].split("(")[2].split(")")[0].split(",")]
            truth = region_truth(meta[rec["image"]]["distortions"], region)
            assert rec["conversations"][1]["value"] == region_answer(truth)
    plain = tmp_path / "p"
    synthesize(plain, images=6, bench_images=2, seed=4, sizes=[(320, 240)])
    assert (json.loads((plain / "train" / "train_metadata.json").read_text())
            == json.loads(r.train_metadata.read_text()))  # the images and their truth do not change


def test_synth_deals_the_added_questions_by_the_choice_share(tmp_path, capsys):
    from collections import Counter

    from vida_eval.data.synth import is_choice

    assert [is_choice(j, 0.5) for j in range(6)] == [False, True] * 3  # the default alternates, region first
    for share in (0.0, 0.3, 0.5, 1.0):
        assert sum(is_choice(j, share) for j in range(20)) == int(20 * share)

    def kinds(root):
        r = Release(root)
        return Counter(n for n in ("vida_g_reg_perception", "vida_p_mcq")
                       for _ in r.subset_file(n).read_text().splitlines())

    common = ["--images", "5", "--bench-images", "2", "--seed", "2", "--sizes", "320x240",
              "--questions-per-image", "30"]
    assert main(["data", "synth", str(tmp_path / "half"), *common]) == 0
    assert main(["data", "synth", str(tmp_path / "all"), *common, "--choice-share", "1"]) == 0
    half, every = kinds(tmp_path / "half"), kinds(tmp_path / "all")
    assert sum(half.values()) == sum(every.values())  # as many questions, dealt otherwise
    assert every["vida_p_mcq"] > half["vida_p_mcq"] and every["vida_g_reg_perception"] < half["vida_g_reg_perception"]
    assert ((tmp_path / "half" / "train" / "train_metadata.json").read_text()
            == (tmp_path / "all" / "train" / "train_metadata.json").read_text())
    capsys.readouterr()
    assert main(["data", "synth", str(tmp_path / "bad"), "--images", "1", "--choice-share", "2"]) == 2
    assert "--choice-share" in capsys.readouterr().err


def test_synth_draws_only_the_asked_distortion_mix(tmp_path, capsys):
    root = tmp_path / "mix"
    types = ["Overexposure", "Meaningless solid color"]
    assert main(["data", "synth", str(root), "--images", "40", "--bench-images", "20", "--seed", "3", "--sizes",
                 "320x240", "--types", ",".join(types), "--most-distortions", "1", "--repeat-share", "0",
                 "--global-share", "1"]) == 0
    r = Release(root)
    for meta_file in (r.train_metadata, r.bench_gt / "bench_metadata.json"):
        meta = json.loads(meta_file.read_text())
        drawn = [d for m in meta for d in m["distortions"]]
        assert drawn and {d["distortion"] for d in drawn} <= set(types)
        assert max(len(m["distortions"]) for m in meta) == 1
        assert all(d["coordinates"] == [0, 0, 999, 999] for d in drawn)
    capsys.readouterr()
    assert main(["data", "synth", str(tmp_path / "bad"), "--images", "1", "--types", "Overexposure,Glare"]) == 2
    assert "Glare" in capsys.readouterr().err
