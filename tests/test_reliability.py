"""Bad input, class by class: a message naming the file (exit 2), a failed check (exit 1), or a diagnostic;
never a traceback, never a record lost without a word, never a failure served as an answer."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vida_eval.cli import main
from vida_eval.data.layout import SUBTASK_FOLDERS, Release
from vida_eval.data.synth import synthesize

from .conftest import ROOT
from .test_scoring import perfect_predictions, tiny_bench, write_gt, write_pred

UNFORESEEN = "unforeseen failure"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("reliability") / "release", images=6, bench_images=3, seed=11)


@pytest.fixture
def release(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / "release", symlinks=True))


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and UNFORESEEN not in cap.err, cap.err[-2000:]
    return code, cap.out, cap.err


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ----------------------------------------------------------------- release layout

def test_a_second_folder_for_a_subtask_is_refused_not_half_read(release, tmp_path, capsys):
    r = Release(release)
    first = r.subset_file("vida_p_mcq").read_text().splitlines()[0]
    plain = r.qwen2 / "ViDA-P"
    plain.mkdir()
    (plain / "mcq.jsonl").write_text(first + "\n")
    for argv in (["data", "check", release], ["data", "prepare", "--release", release, "--out", tmp_path / "o"]):
        code, _, err = run(argv, capsys)
        assert code == 2
        assert "'ViDA-P'" in err and repr(SUBTASK_FOLDERS["ViDA-P"]) in err
    assert not (tmp_path / "o" / "vida_p_qa.jsonl").exists()


@pytest.mark.parametrize("damage", ["missing", "folder"])
def test_a_missing_subtask_file_fails_check_and_prepare(release, tmp_path, capsys, damage):
    path = Release(release).subset_file("vida_p_score")
    path.unlink()
    if damage == "folder":
        path.mkdir()
    code, out, err = run(["data", "check", release], capsys)
    assert code == 1 and str(path) in err
    assert "MISSING" in out
    code, out, err = run(["data", "prepare", "--release", release, "--out", tmp_path / "o"], capsys)
    assert code == 1 and str(path) in err
    assert (tmp_path / "o" / "vida_p_mcq.jsonl").is_file() and not (tmp_path / "o" / "vida_p_score.jsonl").exists()
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert "missing" in report["vida_p_score"] or "folder" in report["vida_p_score"]["missing"]


@pytest.mark.parametrize("damage", ["syntax", "object", "truncated"])
def test_check_fails_on_a_combined_json_it_cannot_read_to_the_end(release, capsys, damage):
    combined = Release(release).combined
    text = combined.read_text()
    if damage == "syntax":
        head, tail = text.split('"conversations"', 1)
        text = head + '"conversations" ' + tail  # ':' missing after the key of the first record
        text = text.replace('"conversations" ', '"conversations" =', 1)
    elif damage == "object":
        text = json.dumps({"records": json.loads(text)})
    else:
        text = text[: len(text) // 2]
    combined.write_text(text)
    code, out, err = run(["data", "check", release], capsys)
    assert code == 1
    assert f"{combined}:" in err and "cannot be read" in err
    assert "not read to the end" in out


# ------------------------------------------------------------ records changed in silence

def test_invalid_utf8_is_rejected_not_replaced(release, tmp_path, capsys):
    path = Release(release).subset_file("vida_d_assess")
    raw = path.read_bytes().split(b"\n")
    raw[1] = raw[1].replace(b"image", b"im\xffage", 1)
    path.write_bytes(b"\n".join(raw))
    code, _, _ = run(["data", "prepare", "--release", release, "--out", tmp_path / "o"], capsys)
    assert code == 0
    rejects = lines(tmp_path / "o" / "rejects" / "vida_d_assess.jsonl")
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejects] == [(2, "invalid UTF-8")]
    assert all("\ufffd" not in line for line in (tmp_path / "o" / "vida_d_assess.jsonl").read_text().splitlines())


def _first_image(release: Path, name: str = "vida_p_mcq") -> Path:
    return Release(release).train_images / lines(Release(release).subset_file(name))[0]["image"]


def test_images_are_decoded_links_out_of_the_release_and_bombs_refused(release, tmp_path, capsys):
    from PIL import Image

    r = Release(release)
    by_image = {}
    for name in ("vida_p_mcq", "vida_d_assess", "vida_g_dist_detect"):
        for rec in lines(r.subset_file(name)):
            by_image.setdefault(rec["image"], set()).add(name)
    names = sorted(by_image)
    truncated, linked, bomb = (r.train_images / n for n in names[:3])
    data = truncated.read_bytes()
    with Image.open(truncated) as im:
        assert im.format in ("JPEG", "PNG")
    truncated.write_bytes(data[: len(data) * 2 // 3])
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (64, 64)).save(outside)
    linked.unlink()
    linked.symlink_to(outside)
    Image.new("1", (15000, 15000)).save(bomb, format=Image.open(outside).format)  # 225 Mpx in a small file
    code, _, _ = run(["data", "prepare", "--release", release, "--out", tmp_path / "o"], capsys)
    assert code == 0
    reasons = {}
    for f in (tmp_path / "o" / "rejects").iterdir():
        for rec in lines(f):
            reasons.setdefault(rec["record"]["image"], set()).add(rec["reason"])
    assert any("truncated" in x for x in reasons[truncated.name]), reasons[truncated.name]
    assert any("outside" in x for x in reasons[linked.name])
    assert any("more pixels than a decoder should expand" in x for x in reasons[bomb.name])


def test_an_id_in_two_subtask_files_is_flagged(release, tmp_path, capsys):
    r = Release(release)
    a, b = r.subset_file("vida_d_assess"), r.subset_file("vida_p_mcq")
    recs = lines(b)
    recs[0]["id"] = lines(a)[0]["id"]
    b.write_text("".join(json.dumps(x) + "\n" for x in recs))
    _, out, _ = run(["data", "check", release], capsys)
    assert "id also used in vida_d_assess" in out


def test_preparing_again_leaves_nothing_of_the_earlier_run(release, tmp_path, capsys):
    r = Release(release)
    out = tmp_path / "o"
    mcq = r.subset_file("vida_p_mcq")
    good = mcq.read_text()
    mcq.write_text(good + "{broken\n")
    assert run(["data", "prepare", "--release", release, "--out", out], capsys)[0] == 0
    assert (out / "rejects" / "vida_p_mcq.jsonl").is_file()
    mcq.write_text(good)
    r.subset_file("vida_p_qa").unlink()
    code, stdout, _ = run(["data", "prepare", "--release", release, "--out", out], capsys)
    assert code == 1
    assert not (out / "rejects" / "vida_p_mcq.jsonl").exists()  # no stale rejects of the fixed file
    assert not (out / "vida_p_qa.jsonl").exists() and f"removed {out / 'vida_p_qa.jsonl'}" in stdout
    assert not list(out.rglob("*.tmp"))


def test_out_inside_the_release_is_refused(release, capsys):
    code, _, err = run(["data", "prepare", "--release", release, "--out", release / "train" / "prepared"], capsys)
    assert code == 2 and "inside the release" in err
    assert not (release / "train" / "prepared").exists()


# ---------------------------------------------------------------- output paths

def _score_bench(tmp_path):
    mcq, reg, meta = tiny_bench()
    p, g, d = perfect_predictions(mcq, reg, meta)
    write_gt(tmp_path / "gt", mcq, reg, meta)
    write_pred(tmp_path / "pred", p, g, d)
    return tmp_path / "pred", tmp_path / "gt"


def _commands(tmp_path, release, out):
    pred, gt = _score_bench(tmp_path)
    return {
        "score": ["score", "--pred", pred, "--gt", gt, "--out", out],
        "submit": ["submit", "--pred", pred, "--out", out],
        "parse": ["parse", "--task", "perception", pred / "perception.json", out],
        "prepare": ["data", "prepare", "--release", release, "--out", out],
    }


@pytest.mark.parametrize("command", ["score", "submit", "parse", "prepare"])
@pytest.mark.parametrize("where", ["folder", "file", "under_a_file", "proc", "read_only"])
def test_every_unusable_out_is_one_line_and_exit_2(release, tmp_path, capsys, command, where):
    if where == "read_only" and os.geteuid() == 0:
        pytest.skip("permissions do not bind the superuser")
    target = {"folder": tmp_path / "a-folder", "file": tmp_path / "a-file", "under_a_file": tmp_path / "a-file" / "x",
              "proc": Path("/proc/self/vida.json"), "read_only": tmp_path / "ro" / "x.json"}[where]
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("keep me")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    if command == "prepare" and where == "folder":
        pytest.skip("a folder is what prepare's --out takes")
    if command != "prepare" and where == "file":
        pytest.skip("an existing file is replaced, as a user asks")
    code, _, err = run(_commands(tmp_path, release, target)[command], capsys)
    assert code == 2, err
    assert str(target) in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_concurrent_writers_of_one_out_never_collide(tmp_path):
    pred, gt = _score_bench(tmp_path)
    out = tmp_path / "scores.json"
    procs = [subprocess.Popen([sys.executable, "-m", "vida_eval", "score", "--pred", str(pred), "--gt", str(gt),
                               "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(8)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert json.loads(out.read_text())["Perception Accuracy"] == 1.0
    assert sorted(os.listdir(tmp_path)) == ["gt", "pred", "scores.json"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    from vida_eval.files import atomic_write, write_json

    write_json(tmp_path / "x.json", [1])
    with pytest.raises(ZeroDivisionError), atomic_write(tmp_path / "x.json") as f:
        f.write("[2")
        raise ZeroDivisionError
    assert os.listdir(tmp_path) == ["x.json"] and json.loads((tmp_path / "x.json").read_text()) == [1]


# ------------------------------------------------------------ what cannot be read

def _encrypt_flag(path: Path) -> None:
    """Mark every member encrypted (general-purpose flag bit 0), as a password-protected zip does."""
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        while at >= 0:
            flags = struct.unpack_from("<H", data, at + offset)[0]
            struct.pack_into("<H", data, at + offset, flags | 1)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ["deep_json", "encrypted_zip", "huge_member"])
def test_unreadable_predictions_exit_2_naming_the_file(tmp_path, capsys, monkeypatch, case):
    pred, gt = _score_bench(tmp_path)
    if case == "deep_json":
        (pred / "perception.json").write_text("[" * 200_000 + "]" * 200_000)
        target, named = pred, "perception.json"
    else:
        target = tmp_path / "sub.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in pred.iterdir():
                zf.writestr(f.name, f.read_text() + (" " * (3 << 20) if case == "huge_member" else ""))
        if case == "encrypted_zip":
            _encrypt_flag(target)
        else:
            monkeypatch.setattr("vida_eval.records.MAX_MEMBER_BYTES", 2 << 20)
        named = "sub.zip"
    code, _, err = run(["score", "--pred", target, "--gt", gt], capsys)
    assert code == 2 and named in err, err


def test_a_zip_with_two_members_of_one_name_scores_the_last_and_says_so(tmp_path, capsys):
    pred, gt = _score_bench(tmp_path)
    target = tmp_path / "sub.zip"
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("perception.json", json.dumps([]))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("perception.json", (pred / "perception.json").read_text())
        for f in pred.iterdir():
            if f.name != "perception.json":
                zf.writestr(f.name, f.read_text())
    code, _, err = run(["score", "--pred", target, "--gt", gt, "--out", tmp_path / "s.json"], capsys)
    assert code == 0
    assert "2 members named perception.json" in err
    with zipfile.ZipFile(target) as zf:  # what extraction keeps
        zf.extractall(tmp_path / "x")
    assert json.loads((tmp_path / "x" / "perception.json").read_text())  # the last, not the empty first
    assert json.loads((tmp_path / "s.json").read_text())["Perception Accuracy"] == 1.0


def test_non_finite_values_are_diagnosed(tmp_path, capsys):
    pred, gt = _score_bench(tmp_path)
    g = json.loads((pred / "grounding.json").read_text())
    g[0]["distortions"][0]["coordinates"][2] = float("nan")
    (pred / "grounding.json").write_text(json.dumps(g))
    _, _, meta = tiny_bench()
    (pred / "scoring.json").write_text(json.dumps([{"id": m["id"], "image": m["image"],
                                                    "pred_mos": float("inf") if m["id"] == 0 else 3.0}
                                                   for m in meta]))
    code, _, _ = run(["score", "--pred", pred, "--gt", gt, "--out", tmp_path / "s.json"], capsys)
    assert code == 0
    diags = [d["message"] for d in json.loads((tmp_path / "s.json").read_text())["diagnostics"]]
    assert any("not a finite number" in m and "coordinates" in m for m in diags), diags
    assert any("pred_mos" in m and "not a finite number" in m for m in diags), diags


def test_a_ground_truth_distortion_that_is_text_is_reported(tmp_path, capsys):
    pred, gt = _score_bench(tmp_path)
    meta = json.loads((gt / "bench_metadata.json").read_text())
    meta[0]["distortions"][0] = "Noise"
    (gt / "bench_metadata.json").write_text(json.dumps(meta))
    reg = json.loads((gt / "reg-p_bench.json").read_text())
    reg[0]["distortions"] = "Noise"
    (gt / "reg-p_bench.json").write_text(json.dumps(reg))
    code, _, err = run(["score", "--pred", pred, "--gt", gt], capsys)
    assert code == 0 and "bench_metadata.json" in err and "reg-p_bench.json" in err


# ------------------------------------------------------------------ eval and infer

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from vida_eval.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("reliability-model") / "model")


def _infer(model, bench, out, *extra, task="scoring"):
    return ["infer", "--task", task, "--model", model, "--bench", bench, "--out", out, "--backend", "hf", *extra]


@pytest.mark.parametrize("case", [
    "no_benchmark_json", "record_without_image", "truncated_mcq", "no_model", "no_adapter", "corrupt_config",
    "unknown_task", "chunk_size_0", "max_new_tokens_negative", "openai_without_base_url", "model_is_a_file",
])
def test_bad_eval_input_exits_2_naming_it(release, model, tmp_path, capsys, case):
    r = Release(release)
    bench_file = {"no_benchmark_json": "benchmark.json", "record_without_image": "reg-p_ques.json",
                  "truncated_mcq": "mcq.json"}.get(case)
    if case in ("no_model", "corrupt_config", "model_is_a_file"):
        broken = Path(shutil.copytree(model, tmp_path / "model"))
        if case == "no_model":
            shutil.rmtree(broken)
        elif case == "corrupt_config":
            (broken / "config.json").write_text('{"model_type": ')
        else:
            shutil.rmtree(broken)
            broken.write_text("not a model")
        model = broken
    if case == "no_benchmark_json":
        (r.bench_release / "benchmark.json").unlink()
    elif case == "record_without_image":
        recs = json.loads((r.bench_release / "reg-p_ques.json").read_text())
        del recs[1]["image"]
        (r.bench_release / "reg-p_ques.json").write_text(json.dumps(recs))
    elif case == "truncated_mcq":
        text = (r.bench_release / "mcq.json").read_text()
        (r.bench_release / "mcq.json").write_text(text[: len(text) // 2])
    argv = ["eval", "--model", model, "--bench", release, "--out", tmp_path / "run", "--backend", "hf"]
    extra = {"no_adapter": ["--lora", tmp_path / "no-adapter"], "unknown_task": ["--tasks", "scoring,grading"],
             "chunk_size_0": ["--chunk-size", "0"], "max_new_tokens_negative": ["--max-new-tokens", "-1"]}
    argv += extra.get(case, [])
    if case == "openai_without_base_url":
        argv[argv.index("hf")] = "openai"
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    named = {"no_adapter": "no-adapter", "unknown_task": "grading", "chunk_size_0": "--chunk-size",
             "max_new_tokens_negative": "--max-new-tokens", "openai_without_base_url": "--base-url",
             "record_without_image": "record 1"}.get(case) or bench_file or str(model)
    assert named in err, err
    if case == "corrupt_config":
        assert "config.json" in err


def test_failed_requests_are_retried_not_cached(release, model, tmp_path, capsys):
    r = Release(release)
    image = min(r.val_images.iterdir())
    saved = tmp_path / "saved"
    shutil.move(image, saved)
    out = tmp_path / "run"
    code, stdout, _ = run(_infer(model, release, out), capsys)
    assert code == 0 and "1 errors" in stdout
    by_image = {x["image"]: x for x in json.loads((out / "scoring.json").read_text())}
    assert "not found" in by_image[image.name]["error"]
    shutil.move(saved, image)
    code, stdout, _ = run(_infer(model, release, out), capsys)
    total = len(by_image)
    assert code == 0 and f"(1 computed, {total - 1} from cache, 0 errors)" in stdout
    again = {x["image"]: x for x in json.loads((out / "scoring.json").read_text())}
    assert "error" not in again[image.name] and again[image.name]["pred_mos"]


def test_an_unreachable_server_is_asked_again_next_run(release, tmp_path):
    import socket

    from vida_eval.infer.backends import OpenAIBackend
    from vida_eval.infer.runner import AnswerCache, run_task

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = Release(release)
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", retries=0, timeout=2)
    result = run_task("scoring", backend, r.bench_release, r.val_images, tmp_path, progress=False)
    records = json.loads(result.predictions[0].read_text())
    assert result.errors == len(records) and all("unreachable" in x["error"] for x in records)
    assert not AnswerCache(tmp_path / "cache" / "scoring.jsonl").answers


def test_a_bomb_in_the_bench_is_an_error_record(release, model, tmp_path, capsys):
    from PIL import Image

    r = Release(release)
    image = min(r.val_images.iterdir())
    with Image.open(image) as im:
        fmt = im.format
    Image.new("1", (15000, 15000)).save(image, format=fmt)
    code, _, _ = run(_infer(model, release, tmp_path / "run"), capsys)
    assert code == 0
    by_image = {x["image"]: x for x in json.loads((tmp_path / "run" / "scoring.json").read_text())}
    assert "DecompressionBombError" in by_image[image.name]["error"]
