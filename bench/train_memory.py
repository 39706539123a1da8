"""Peak memory of a training recipe on its largest samples, through ``llamafactory-cli train`` itself.

    python bench/train_memory.py --recipe configs/qwen2vl_lora.yaml --shape 7b --batch-sizes 1,2,3,4
    python bench/train_memory.py --recipe configs/tiny_lora.yaml --shape tiny --batch-sizes 1 --steps 1   # CPU

The samples are the worst the recipe admits: the ViDA-Bench size with the most
tokens at the recipe's pixel limits (a 2988x5312 photo: 8,228 tokens at the
challenge recipe's) with a description-length answer that fills the sample to
exactly ``cutoff_len``, so every batch is the longest possible. The model has
the shape's real architecture and random weights (it does not change memory).
Each batch size runs the recipe as shipped (LoRA, vision tower, merger, bf16,
gradient checkpointing, its cutoff and pixel limits) for a few steps in a
process of its own, with DeepSpeed off (one GPU: ZeRO-2 would shard only the
optimizer state of the trained parameters). Printed per batch size: the
allocator's peak (allocated, reserved), the card's peak as nvidia-smi sees it
(CUDA context included), and whether that fits an 80 GB card.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1 << 30
CARD_80GB = 79.6 * GIB  # what an 80 GB H100 / A100 reports as its total (81,559 MiB)
# Runs the recipe through LLaMA-Factory's own command-line entry point, in this process, and reports the peaks.
WRAPPER = """
import atexit, json, sys
def report():
    import torch
    if torch.cuda.is_available():
        print("VIDA_PEAK " + json.dumps({"allocated": torch.cuda.max_memory_allocated(),
                                         "reserved": torch.cuda.max_memory_reserved()}), flush=True)
atexit.register(report)
from llamafactory.cli import main
sys.argv = ["llamafactory-cli"] + sys.argv[1:]
main()
"""


def build_model(shape: str, folder: Path) -> Path:
    """A model folder of *shape*: config, the real tokenizer and processor (real Qwen2-VL pixel limits), random
    weights (bf16, made on the GPU, for the GPU shapes)."""
    from dataclasses import replace

    from vida_eval.images import QWEN2_VL_MAX_PIXELS, QWEN2_VL_MIN_PIXELS
    from vida_eval.models.tiny import QWEN2_VL_2B, QWEN2_VL_7B, TinySpec, build_tiny_model

    if (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file():
        return folder
    if shape == "tiny":
        return build_tiny_model(folder, replace(TinySpec(), min_pixels=QWEN2_VL_MIN_PIXELS,
                                                max_pixels=QWEN2_VL_MAX_PIXELS))
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    spec = {"7b": QWEN2_VL_7B, "2b": QWEN2_VL_2B}[shape]
    build_tiny_model(folder, spec, weights=False)
    config = AutoConfig.from_pretrained(folder)
    start = time.perf_counter()
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    del model
    torch.cuda.empty_cache()
    print(f"{shape} random weights written to {folder} in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def largest_samples(recipe, model: Path, data: Path, count: int) -> tuple[int, tuple[int, int], int]:
    """Write *count* copies of the recipe's longest admitted sample as the dataset ``vida_memprobe`` in *data*;
    returns (tokens per sample, image size, image tokens)."""
    import numpy as np
    from PIL import Image

    from vida_eval import prompts
    from vida_eval.data.sizes import VIDA_BENCH_SIZES
    from vida_eval.train.lengths import LengthCounter
    from vida_eval.train.recipe import Recipe

    probe = Recipe(recipe.path, {**recipe.args, "model_name_or_path": str(model)})
    (w, h), _ = probe.largest_image(VIDA_BENCH_SIZES)
    images = data / "memprobe"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(texture).resize((w, h)).save(images / "largest.jpg", quality=90)
    counter = LengthCounter(probe)
    words = ["The", "soft", "light", "falls", "on", "the", "textured", "wall", "while", "fine", "details", "in",
             "the", "lower-left", "area", "stay", "hard", "to", "discern", "because", "of", "noise."]

    def record(n: int) -> dict:
        answer = " ".join(words[i % len(words)] for i in range(n))
        return {"conversations": [{"from": "human", "value": "<image>\n" + prompts.DESCRIPTION_USER},
                                  {"from": "gpt", "value": answer}],
                "images": ["memprobe/largest.jpg"], "system": prompts.DESCRIPTION_SYSTEM}

    lo, hi = 1, 20000  # the most words whose sample still fits cutoff_len
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if counter.count(record(mid), [(w, h)])[0] <= recipe.cutoff_len:
            lo = mid
        else:
            hi = mid - 1
    rec = record(lo)
    tokens, image = counter.count(rec, [(w, h)])
    with open(data / "memprobe.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": f"largest{i}", **rec}) + "\n" for i in range(count))
    columns = {"messages": "conversations", "images": "images", "system": "system"}
    tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    (data / "dataset_info.json").write_text(json.dumps(
        {"vida_memprobe": {"file_name": "memprobe.jsonl", "formatting": "sharegpt", "columns": columns,
                           "tags": tags}}, indent=2))
    return tokens, (w, h), image


def run_config(recipe_args: dict, model: Path, data: Path, out: Path, batch: int, steps: int, cpu: bool) -> dict:
    from transformers import TrainingArguments

    args = dict(recipe_args)
    for key in ("deepspeed", "tokenized_path", "max_samples", "num_train_epochs"):
        args.pop(key, None)
    if "warmup_ratio" not in TrainingArguments.__dataclass_fields__ and "warmup_ratio" in args:
        args["warmup_steps"] = args.pop("warmup_ratio")  # newer transformers: a ratio given as warmup_steps
    args.update(model_name_or_path=str(model), dataset="vida_memprobe", dataset_dir=str(data),
                output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                gradient_accumulation_steps=1, save_steps=10 ** 6, logging_steps=1, overwrite_cache=True,
                preprocessing_num_workers=1, dataloader_num_workers=0, report_to="none", plot_loss=False,
                overwrite_output_dir=True)
    if cpu:
        args.update(use_cpu=True, bf16=False, tf32=False)
    config = out.with_suffix(".yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(args))
    peak_smi = [0]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10, check=False).stdout.split()
                peak_smi[0] = max(peak_smi[0], int(used[0]) * (1 << 20))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            stop.wait(0.5)

    watcher = threading.Thread(target=poll, daemon=True)
    if not cpu:
        watcher.start()
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "train", str(config)], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    stop.set()
    row = {"batch": batch, "rc": proc.returncode, "wall_s": round(wall, 1), "smi_peak": peak_smi[0],
           "rss_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}
    for line in proc.stdout.splitlines():
        if line.startswith("VIDA_PEAK "):
            row.update(json.loads(line[len("VIDA_PEAK "):]))
    results = out / "train_results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        row["s_per_step"] = round(r["train_runtime"] / steps, 2)
        row["loss"] = r.get("train_loss")
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        row["error"] = "out of memory" if "OutOfMemory" in text or "out of memory" in text else text[-1500:]
    return row


def main(argv=None) -> int:
    from vida_eval.train.recipe import load_recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "configs" / "qwen2vl_lora.yaml"))
    p.add_argument("--shape", default="7b", choices=("7b", "2b", "tiny"))
    p.add_argument("--batch-sizes", default="1,2,3,4")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--work", default="runs/train_memory", help="model, data and run folders")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    recipe = load_recipe(a.recipe)
    batches = [int(b) for b in a.batch_sizes.split(",")]
    work = Path(a.work).resolve()
    cpu = a.shape == "tiny"
    model = build_model(a.shape, work / f"model-{a.shape}")
    tokens, size, image = largest_samples(recipe, model, work / "data", max(batches) * a.steps)
    card = "cpu"
    if not cpu:
        import torch

        card = torch.cuda.get_device_name(0)
    print(f"{recipe.path.name}, {a.shape} shape on {card}: every sample {tokens} tokens (cutoff_len "
          f"{recipe.cutoff_len}; a {size[0]}x{size[1]} image = {image} tokens), {a.steps} steps per batch size, "
          f"PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '(unset)')}", flush=True)
    rows = []
    print(f"{'batch':>5} {'allocated':>10} {'reserved':>9} {'nvidia-smi':>11} {'fits 80 GB':>10} {'s/step':>7}  note")
    for b in batches:
        row = run_config(recipe.args, model, work / "data", work / f"run-{a.shape}-b{b}", b, a.steps, cpu)
        row.update(shape=a.shape, recipe=recipe.path.name, tokens_per_sample=tokens, card=card,
                   alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""))
        rows.append(row)
        fits = "" if cpu or row["rc"] else ("yes" if row["smi_peak"] <= CARD_80GB else "no")
        print(f"{b:>5} {row.get('allocated', 0) / GIB:>9.1f}G {row.get('reserved', 0) / GIB:>8.1f}G "
              f"{row['smi_peak'] / GIB:>10.1f}G {fits:>10} {row.get('s_per_step', float('nan')):>7}  "
              f"{row.get('error', 'ok')[:200] if row['rc'] else 'ok'}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["rc"] == 0 or r.get("error") == "out of memory" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
