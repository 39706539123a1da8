"""LLaMA-Factory integration: configs, dataset loading, the CPU train/export loop, the webui."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from vida_eval.data.prepare import prepare
from vida_eval.models.families import family_of_model
from vida_eval.models.tiny import TinySpec, build_tiny_model
from vida_eval.train.recipe import load_recipe

from .conftest import ROOT, llamafactory_dataset

pytest.importorskip("llamafactory")

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
CLI = Path(sys.executable).with_name("llamafactory-cli")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}


# ----------------------------------------------------------------- configs

def _load(path):
    """A config as LLaMA-Factory reads it: vida-eval train's own keys (checked) taken out."""
    from vida_eval.train.workflow import split_keys

    return split_keys(yaml.safe_load(Path(path).read_text()))[0]


def _parse(args: dict):
    """LLaMA-Factory's own parsing of a config (unknown keys raise)."""
    from llamafactory.hparams.parser import _parse_infer_args, _parse_train_args

    if "export_dir" in args:
        return _parse_infer_args(args)
    return _parse_train_args(args)


def _cpu_view(args: dict) -> dict:
    """GPU-only switches are checked to be real fields, then turned off so the CPU can build the arguments."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    out = dict(args)
    for key, off in (("deepspeed", None), ("tf32", None), ("bf16", False)):
        if key in out:
            assert key in fields
            out[key] = off
    if args.get("deepspeed"):
        ds = json.loads((ROOT / args["deepspeed"]).read_text())
        assert ds["zero_optimization"]["stage"] in (2, 3)
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_is_accepted_by_llamafactory(config):
    args = _load(config)
    parsed = _parse(_cpu_view(args))
    model_args = parsed[0]
    assert model_args.model_name_or_path == args["model_name_or_path"]
    if "dataset" in args:
        info = json.loads((ROOT / "dataset_info.json").read_text())
        assert all(d in info for d in args["dataset"].split(","))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_with_a_typo_is_refused(config):
    args = _cpu_view(_load(config))
    args["lora_rnak"] = 8
    with pytest.raises(ValueError, match="lora_rnak"):
        _parse(args)


def test_challenge_recipe_values():
    a = _load(ROOT / "configs" / "qwen2vl_lora.yaml")
    assert (a["lora_rank"], a["lora_alpha"], a["lora_dropout"]) == (64, 128, 0.05)
    assert a["per_device_train_batch_size"] * a["gradient_accumulation_steps"] * 8 == 128
    assert (a["image_min_pixels"], a["image_max_pixels"]) == (256 * 28 * 28, 8192 * 28 * 28)
    assert a["freeze_vision_tower"] is False and a["additional_target"] == "merger"
    tiny = _load(ROOT / "configs" / "tiny_lora.yaml")
    same = {"stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "template",
            "freeze_vision_tower", "freeze_multi_modal_projector", "additional_target", "lr_scheduler_type",
            "weight_decay", "warmup_ratio"}
    assert {k: a[k] for k in same} == {k: tiny[k] for k in same}


def test_learning_proof_recipe_matches_the_small_model(tmp_path):
    """Full fine-tuning of a model of tens of millions of parameters, trained at the resolution it is evaluated at."""
    import torch
    from transformers import AutoImageProcessor, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from vida_eval.models.tiny import SMALL

    recipe = _load(ROOT / "configs" / "small_full.yaml")
    assert recipe["finetuning_type"] == "full" and recipe["dataset"] == "vida_synth"
    assert not recipe["freeze_vision_tower"] and not recipe["freeze_multi_modal_projector"]
    build_tiny_model(tmp_path / "small", SMALL, weights=False)
    config = Qwen2VLConfig.from_pretrained(tmp_path / "small")
    with torch.device("meta"):
        params = sum(p.numel() for p in Qwen2VLForConditionalGeneration(config).parameters())
    assert 10e6 < params < 100e6
    text, vision = config.text_config, config.vision_config
    assert text.hidden_size // text.num_attention_heads == 64 and vision.embed_dim // vision.num_heads == 64
    processor = AutoImageProcessor.from_pretrained(tmp_path / "small")
    assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (
        recipe["image_min_pixels"], recipe["image_max_pixels"])


def test_demo_recipe_matches_the_demo_model(tmp_path):
    """The demo trains every weight of the demo preset's model with answer-only logits, at the resolution its
    processor evaluates at, on the demo's own release."""
    from transformers import AutoImageProcessor, Qwen2VLConfig

    from vida_eval.models.tiny import DEMO

    raw = yaml.safe_load((ROOT / "configs" / "tiny_demo.yaml").read_text())
    assert raw["finetuning_type"] == "full" and raw["answer_logits_only"] is True and raw["dataset"] == "vida_demo"
    assert raw["model_name_or_path"] == "models/demo-qwen2vl" and raw["use_cpu"] is True
    build_tiny_model(tmp_path / "demo", DEMO, weights=False)
    text = Qwen2VLConfig.from_pretrained(tmp_path / "demo").text_config
    assert text.hidden_size // text.num_attention_heads == 32  # a head size every attention backend supports
    processor = AutoImageProcessor.from_pretrained(tmp_path / "demo")
    assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (
        raw["image_min_pixels"], raw["image_max_pixels"])
    makefile = (ROOT / "Makefile").read_text()
    assert "tiny-model $(DEMO_MODEL) --preset demo" in makefile and "configs/tiny_demo.yaml" in makefile
    assert "--choice-share 1" in makefile  # the questions beyond one round: multiple-choice, as measured


# ----------------------------------------------------------------- datasets

def test_every_registered_dataset_loads_through_llamafactory(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    from llamafactory.data import get_dataset

    info = json.loads((workspace / "data" / "dataset_info.json").read_text())
    assert len(info) == 26
    # LLaMA-Factory's loader and preprocessing for each dataset; the tokenizer and template are loaded once.
    _, tok, template, (model_args, data_args, training_args, *_) = llamafactory_dataset(
        workspace, next(iter(info)), cutoff_len=1024, max_samples=6)
    for name in info:
        data_args.dataset = [name]
        ds = get_dataset(template, model_args, data_args, training_args, "sft", **tok)["train_dataset"]
        assert len(ds) > 0, name
        row = ds[0]
        assert row["images"], name
        image_pad = tok["tokenizer"].convert_tokens_to_ids("<|image_pad|>")
        assert row["input_ids"].count(image_pad) >= 16, name  # the image really became vision tokens
        answer = [t for t in row["labels"] if t != -100]
        assert answer and answer[-2:] == tok["tokenizer"].encode("<|im_end|>\n"), name


# ------------------------------------------------------------ the CPU loop

def _log(path: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in path.read_text().splitlines() if "loss" in json.loads(x)]


def test_train_then_export_on_cpu(workspace):
    out, merged = workspace / "saves" / "lora", workspace / "models" / "merged"
    train = subprocess.run(
        [str(CLI), "train", str(ROOT / "configs" / "tiny_lora.yaml"), "max_samples=48", f"output_dir={out}"],
        cwd=workspace, env=ENV, capture_output=True, text=True, timeout=1200,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    losses = _log(out / "trainer_log.jsonl")
    assert len(losses) >= 4 and losses[-1] < losses[0], losses
    export = subprocess.run(
        [str(CLI), "export", str(ROOT / "configs" / "tiny_merge.yaml"), f"adapter_name_or_path={out}",
         f"export_dir={merged}"], cwd=workspace, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]

    import torch
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    base_dir = workspace / "models" / "tiny-qwen2vl"
    processor = AutoProcessor.from_pretrained(merged)
    image = Image.open(next((workspace / "data" / "vida_mini" / "images").iterdir())).convert("RGB")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Assess the quality."}]}]
    inputs = processor(text=[processor.apply_chat_template(msgs, add_generation_prompt=True)], images=[image],
                       return_tensors="pt")
    exported = Qwen2VLForConditionalGeneration.from_pretrained(merged, dtype=torch.float32).eval()
    reference = PeftModel.from_pretrained(
        Qwen2VLForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32), out).merge_and_unload().eval()
    untrained = Qwen2VLForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        a, b, c = (m(**inputs).logits for m in (exported, reference, untrained))
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert not torch.allclose(a, c, atol=1e-4)  # the adapter changed the model


def test_make_train_starts_torchrun_of_its_own_environment(tmp_path):
    """Several GPUs (here forced) make LLaMA-Factory launch `torchrun` from PATH: the environment's, not another."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {**ENV, "PATH": path, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "1"}
    proc = subprocess.run(["make", "-s", "train", f"TRAIN_ARGS=max_steps=1 max_samples=8 output_dir={tmp_path}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distributed training: True" in proc.stdout + proc.stderr
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_vida_eval_train_starts_torchrun_when_llamafactory_would(monkeypatch):
    import torch

    from vida_eval.train.workflow import torchrun_ranks

    for name in ("LOCAL_RANK", "FORCE_TORCHRUN", "NPROC_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert torchrun_ranks() is None  # no GPU, nothing forced: train in this process
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    assert torchrun_ranks() == 1  # forced: torchrun even for one process, as llamafactory-cli does
    monkeypatch.setenv("NPROC_PER_NODE", "3")
    assert torchrun_ranks() == 3
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert torchrun_ranks() is None  # already one of torchrun's processes
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv("FORCE_TORCHRUN")
    monkeypatch.delenv("NPROC_PER_NODE")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torchrun_ranks() == 2  # several GPUs: one process each


# ------------------------------------------------------------------ webui

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webui_lists_the_vida_datasets(workspace):
    from gradio_client import Client

    port = _free_port()
    env = {**ENV, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([str(CLI), "webui"], cwd=workspace, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        client = None
        deadline = time.time() + 120
        while time.time() < deadline and client is None:
            try:
                client = Client(url, verbose=False)
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(1)
        assert client is not None, "webui did not start"
        update = client.predict("data", "Supervised Fine-Tuning", api_name="/list_datasets")
        names = [c[0] if isinstance(c, (list, tuple)) else c for c in update["choices"]]
        expected = set(json.loads((ROOT / "dataset_info.json").read_text()))
        assert expected <= set(names)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------- real image sizes

SHIPPED = [p for p in CONFIGS if "tokenized_path" in _load(p)]  # the recipes for the real release


def _data_settings(path) -> tuple:
    a = _load(path)
    return tuple(a.get(k) for k in ("template", "cutoff_len", "image_min_pixels", "image_max_pixels",
                                    "overwrite_cache"))


DATA_SETTINGS = {}
for _path in SHIPPED:
    DATA_SETTINGS.setdefault(_data_settings(_path), []).append(_path)


@pytest.mark.slow
@pytest.mark.parametrize("recipes", list(DATA_SETTINGS.values()),
                         ids=lambda ps: "+".join(p.stem for p in ps))
def test_shipped_data_settings_train_on_a_12_megapixel_photo(recipes, real_model, real_release, tmp_path):
    """`llamafactory-cli train` with a shipped recipe's data settings on samples of a 3120x4160 photo, to the end;
    the tokenized set is written once, holds every image token, and is what the next launch reads."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    data = tmp_path / "data"
    prepare(real_release, data / "vida")
    shutil.copy(ROOT / "dataset_info.json", data / "dataset_info.json")
    combined = data / "vida" / "vida_combined.jsonl"
    big = [x for x in combined.read_text().splitlines() if json.loads(x)["images"][0].endswith(_largest(real_release))]
    combined.write_text("\n".join(big) + "\n")
    args = _load(recipes[0])
    for key in ("deepspeed", "tf32", "warmup_ratio", "num_train_epochs"):
        args.pop(key, None)
    family = family_of_model(args["model_name_or_path"])
    model = real_model
    if family.factor != 28:  # a tiny checkpoint of the recipe's family, with its processor's own limits
        model = build_tiny_model(tmp_path / "model", replace(TinySpec(), min_pixels=family.min_pixels,
                                                             max_pixels=family.max_pixels), family=family)
    args.update(model_name_or_path=str(model), dataset="vida_combined", dataset_dir=str(data),
                output_dir=str(tmp_path / "out"), tokenized_path=str(tmp_path / "tokenized"), max_steps=1,
                per_device_train_batch_size=1, gradient_accumulation_steps=1, use_cpu=True, bf16=False,
                preprocessing_num_workers=1, dataloader_num_workers=0, logging_steps=1, save_steps=1000,
                plot_loss=False)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(args))
    train = subprocess.run([str(CLI), "train", str(config)], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=1800)
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-4000:]
    assert "Tokenized dataset is saved" in log and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    model_args, data_args, training_args, *_ = get_train_args({**args, "output_dir": str(tmp_path / "again")})
    tok = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
    ds = get_dataset(template, model_args, data_args, training_args, "sft", **tok)["train_dataset"]
    pad = tok["tokenizer"].convert_tokens_to_ids("<|image_pad|>")
    photo = load_recipe(config).image_tokens(3120, 4160)
    assert photo == 8112  # 3120x4160 at both families' limits of 8,192 tokens
    assert len(ds) == len(big) and all(row["input_ids"].count(pad) == photo for row in ds)  # no image cut


def _largest(release) -> str:
    meta = json.loads((release / "train" / "train_metadata.json").read_text())
    return max(meta, key=lambda m: m["width"] * m["height"])["image"]


def test_train_memory_bench_runs_the_recipe_through_llamafactory(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "train_memory.py"), "--recipe",
                           str(ROOT / "configs" / "tiny_lora.yaml"), "--shape", "tiny", "--batch-sizes", "1",
                           "--steps", "1", "--work", str(tmp_path), "--json", str(tmp_path / "rows.json")],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [row] = json.loads((tmp_path / "rows.json").read_text())
    assert row["rc"] == 0 and row["tokens_per_sample"] == 1280 and row["s_per_step"] > 0
    assert "every sample 1280 tokens (cutoff_len 1280" in proc.stdout


def test_train_throughput_bench_counts_fewer_image_encodings_in_shared_rows(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--shape", "tiny",
                           "--images", "2", "--questions", "20", "--variants", "recipe,shared", "--work",
                           str(tmp_path), "--json", str(out), "--profile", "1"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["recipe"]["samples_per_s"] > 0 and rows["shared"]["samples_per_s"] > 0
    assert rows["recipe"]["images"] == rows["recipe"]["answers"]  # one encoding per sample
    assert rows["shared"]["images"] < rows["shared"]["answers"]  # one per shared row
    assert "samples/s" in proc.stdout and "x recipe" in proc.stdout
    for row in rows.values():  # one profiled step before the timed ones: operator time by kind
        prof = row["profile"]
        assert prof["steps"] == 1 and row["steps"] >= 1
        assert prof["kinds_s"]["matmul"] > 0 and prof["matmul_flops_per_s"] > 0
        assert sum(prof["kinds_s"].values()) <= prof["window_s"] * (os.cpu_count() or 1)
    assert "profiled steps" in proc.stdout
    # Resumed with one more variant: the rows measured stay as they were, only the new one runs.
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--shape", "tiny",
                           "--images", "2", "--questions", "20", "--variants", "recipe,shared_no_cudnn,shared",
                           "--work", str(tmp_path), "--json", str(out), "--resume"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "kept" in proc.stdout and "recipe, shared kept" in proc.stdout
    again = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in again] == ["recipe", "shared_no_cudnn", "shared"]
    assert again[0] == rows["recipe"] and again[2] == rows["shared"]
    assert again[1]["cudnn_sdp"] is False and again[1]["images"] < again[1]["answers"]  # shared rows, no cuDNN
    assert again[0]["cudnn_sdp"] is True


def test_train_throughput_profile_kinds_and_busy_time():
    sys.path.insert(0, str(ROOT))
    from bench.train_throughput import busy_seconds, kernel_kind

    assert kernel_kind("fmha_cutlassF_bf16_aligned_64x128_rf_sm80") == "attention"  # before "cutlass": matmul
    assert kernel_kind("void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<...>") == "attention"
    assert kernel_kind("nvjet_tst_192x192_64x3_2x1_v_bz_coopB_TNT") == "matmul"
    assert kernel_kind("_cross_entropy_kernel") == "loss"
    assert kernel_kind("Memcpy DtoD (Device -> Device)") == "copy"
    assert kernel_kind("void at::native::vectorized_elementwise_kernel<4, ...>") == "other"
    assert busy_seconds([(0, 2), (1, 3), (5, 6)]) == 4 and busy_seconds([]) == 0
