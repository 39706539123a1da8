"""A local bench carved from the training release: layout, strata, oracle, exclusion, and the checkpoint sweep."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vida_eval.cli import main
from vida_eval.data.holdout import HOLDOUT_FILE
from vida_eval.data.layout import Release
from vida_eval.data.synth import synthesize

from .conftest import ROOT
from .test_data import oracle_predictions, run_parse_and_score

HELD = 8


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("holdout") / "release", images=30, bench_images=2, seed=21)


@pytest.fixture(scope="module")
def bench(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("holdout-bench") / "local-bench"
    assert main(["data", "holdout", "--release", str(release), "--images", str(HELD), "--seed", "4",
                 "--out", str(out)]) == 0
    return out


def _json(path: Path):
    return json.loads(path.read_text())


def test_the_bench_has_the_vida_bench_layout_and_its_images(release, bench):
    for name in ("mcq.json", "reg-p_ques.json", "benchmark.json"):
        assert _json(bench / "release" / name), name
    held = _json(bench / HOLDOUT_FILE)
    assert held["counts"]["images"] == HELD == len(held["images"]) == len(_json(bench / "release" / "benchmark.json"))
    links = sorted(bench.joinpath("images").iterdir())
    assert [p.name for p in links] == held["images"] and all(p.is_symlink() for p in links)
    meta = {m["image"]: m for m in _json(Release(release).train_metadata)}
    for m in _json(bench / "ground_truth" / "bench_metadata.json"):
        assert {k: v for k, v in m.items() if k != "id"} == meta[m["image"]]
    # Every MCQ and region question of a held-out image became a bench item.
    r = Release(release)
    def about(name):
        return [x for x in map(json.loads, r.subset_file(name).read_text().splitlines()) if x["image"] in held["images"]]
    assert len(about("vida_p_mcq")) == held["counts"]["mcq"] == len(_json(bench / "ground_truth" / "mcq.json"))
    assert len(about("vida_g_reg_perception")) == held["counts"]["region_questions"]
    assert {q["concern"] for q in _json(bench / "release" / "mcq.json")} == {"unknown"}  # not in the training files


def test_strata_follow_the_release(release, bench):
    strata = _json(bench / HOLDOUT_FILE)["strata"]
    total = sum(full for full, _ in strata["level"].values())
    for level, (full, held) in strata["level"].items():
        assert abs(held - HELD * full / total) < 1, (level, full, held)
    assert sum(held for _, held in strata["stratum"].values()) == HELD


def test_an_oracle_scores_one_on_the_local_bench(bench, tmp_path):
    o = oracle_predictions(bench / "release", bench / "ground_truth")
    raw = {"perception": o["perception"], "grounding": o["detection"] + o["region"], "description": o["description"]}
    scores = run_parse_and_score(tmp_path / "all", bench, raw, gt=bench / "ground_truth")
    for key in ("Perception Accuracy", "Region mAP", "Description mAP", "Key Distortion Accuracy",
                "Image Quality Accuracy"):
        assert scores[key] == 1.0, (key, scores[key])
    # The official Distortion mAP pools region and detection answers: the region answers repeat boxes the
    # detection answers matched, and count as false positives. Detection answers alone are perfect.
    assert 0.0 < scores["Distortion mAP"] < 1.0
    detection = run_parse_and_score(tmp_path / "det", bench, {"grounding": o["detection"]}, gt=bench / "ground_truth")
    assert detection["Distortion mAP"] == 1.0


def test_broken_records_are_reported_with_file_line_and_reason(release, tmp_path, capsys):
    copy = Path(shutil.copytree(release, tmp_path / "release"))
    r = Release(copy)
    mcq = [json.loads(x) for x in r.subset_file("vida_p_mcq").read_text().splitlines()]
    reg = [json.loads(x) for x in r.subset_file("vida_g_reg_perception").read_text().splitlines()]
    mcq[0]["conversations"][0]["value"] = "<image>\nWhich distortion? Pick one."  # no options
    mcq[1]["conversations"][1]["value"] = "Z."  # names no option
    reg[0]["conversations"][0]["value"] = "<image>\nWhat distortion affects this region?"  # no region box
    r.subset_file("vida_p_mcq").write_text("".join(json.dumps(x) + "\n" for x in mcq))
    r.subset_file("vida_g_reg_perception").write_text("".join(json.dumps(x) + "\n" for x in reg))
    meta = _json(r.train_metadata)
    meta[-1]["level"] = "splendid"
    r.train_metadata.write_text(json.dumps(meta))
    images = sorted({m["image"] for m in meta[:-1]})  # hold out every usable image: the broken records are in
    out = tmp_path / "bench"
    assert main(["data", "holdout", "--release", str(copy), "--images", str(len(images)), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    rejected = _json(out / HOLDOUT_FILE)["rejected"]
    reasons = {(Path(x["file"]).name, x.get("line", x.get("record"))): x["reason"] for x in rejected}
    assert "fewer than two" in reasons[("mcq.jsonl", 1)]
    assert "names no option" in reasons[("mcq.jsonl", 2)]
    assert "no region box" in reasons[("reg-perception.jsonl", 1)]
    assert "splendid" in reasons[("train_metadata.json", len(meta) - 1)]
    assert len(rejected) == 4 == _json(out / HOLDOUT_FILE)["counts"]["rejected"]
    assert "mcq.jsonl:1" in err and "names no option" in err
    assert len(_json(out / "release" / "mcq.json")) == len(mcq) - 2 - sum(m["image"] == meta[-1]["image"] for m in mcq)


def test_no_held_out_image_is_in_the_prepared_training_files(release, bench, tmp_path, capsys):
    held = set(_json(bench / HOLDOUT_FILE)["images"])
    out = tmp_path / "data" / "vida"
    assert main(["data", "prepare", "--release", str(release), "--out", str(out), "--exclude",
                 str(bench / HOLDOUT_FILE)]) == 0
    report = _json(out / "prepare_report.json")
    for path in out.glob("*.jsonl"):
        for rec in map(json.loads, path.read_text().splitlines()):
            assert not {Path(i).name for i in rec["images"]} & held, path
    assert report["vida_p_mcq"]["held_out"] == _json(bench / HOLDOUT_FILE)["counts"]["mcq"]
    assert main(["data", "check", str(release), "--exclude", str(bench), "--prepared", str(out)]) == 0
    leaky = tmp_path / "leaky" / "vida"
    assert main(["data", "prepare", "--release", str(release), "--out", str(leaky)]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(release), "--exclude", str(bench), "--prepared", str(leaky)]) == 1
    assert "records about held-out images" in capsys.readouterr().err


# ------------------------------------------------------------------ sweep

@pytest.mark.skipif(not Path(sys.executable).with_name("llamafactory-cli").is_file(), reason="no LLaMA-Factory")
def test_sweep_scores_every_checkpoint_once(release, bench, tmp_path, capsys):
    from vida_eval.models.tiny import build_tiny_model

    work = tmp_path / "work"
    model = build_tiny_model(work / "models" / "tiny-qwen2vl")
    (work / "data").mkdir(parents=True)
    shutil.copy(ROOT / "dataset_info.json", work / "data" / "dataset_info.json")
    assert main(["data", "prepare", "--release", str(release), "--out", str(work / "data" / "vida_mini"),
                 "--exclude", str(bench / HOLDOUT_FILE)]) == 0
    run = work / "saves" / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1"}
    train = subprocess.run([str(Path(sys.executable).with_name("llamafactory-cli")), "train",
                            str(ROOT / "configs" / "tiny_lora.yaml"), "max_steps=6", "save_steps=2", "max_samples=24",
                            "logging_steps=1", f"output_dir={run}"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=1200)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    argv = ["sweep", "--run", str(run), "--bench", str(bench), "--out", str(tmp_path / "sweep"), "--model", str(model),
            "--backend", "hf", "--max-new-tokens", "8"]
    capsys.readouterr()
    assert main(argv) == 0
    sweep = _json(tmp_path / "sweep" / "sweep.json")
    assert [(c["checkpoint"], c["step"]) for c in sweep["checkpoints"]] == [
        ("checkpoint-2", 2), ("checkpoint-4", 4), ("checkpoint-6", 6)]
    for c in sweep["checkpoints"]:
        scores = _json(tmp_path / "sweep" / c["checkpoint"] / "scores.json")
        assert c["Final Score"] == scores["Final Score"] and "Region mAP" in c
    assert len(sweep["training_loss"]) >= 6
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert out.count("computed") == 3 * 4  # four tasks per checkpoint
    assert main(argv) == 0  # a rerun evaluates nothing it finished
    again = capsys.readouterr().out
    assert again.count("scored before, kept") == 3 and "computed" not in again
