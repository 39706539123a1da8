"""LoRA SFT throughput through ``llamafactory-cli train`` with our recipe, side by side across switches.

A Qwen2-VL-2B-shaped model with random weights and a synthetic mini-ViDA are
written to a scratch folder; each variant runs ``configs/qwen2vl_2b_lora.yaml``
(single device, no DeepSpeed) for a fixed number of steps and reports samples/s,
tokens/s (LLaMA-Factory's count of input tokens seen), peak GPU memory and MFU.

MFU = 4 * N * tokens/s / peak bf16 FLOP/s: a forward pass (2N per token) and
the backward pass through frozen weights (2N) of an N-parameter model; LoRA's
own weight gradients and checkpointing's recomputation are not counted.

    python bench/train_throughput.py [--steps 30] [--variants sdpa,fa2,liger,packing,no_gc]
    python bench/train_throughput.py --shape tiny --steps 4 --variants sdpa,no_gc   # a quick check on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "sdpa": {"flash_attn": "sdpa"},
    "fa2": {"flash_attn": "fa2"},
    "liger": {"flash_attn": "sdpa", "enable_liger_kernel": "true"},
    "packing": {"flash_attn": "sdpa", "packing": "true"},
    "neat_packing": {"flash_attn": "sdpa", "packing": "true", "neat_packing": "true"},
    "no_gc": {"flash_attn": "sdpa", "disable_gradient_checkpointing": "true"},
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


class GpuMemory(threading.Thread):
    """Peak memory used on GPU 0, polled with nvidia-smi."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mib, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=10).stdout
                self.peak_mib = max(self.peak_mib, int(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--variants", default="sdpa,fa2,liger,packing,no_gc")
    ap.add_argument("--shape", choices=("2b", "tiny"), default="2b")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()

    import torch

    from vida_eval.data.prepare import prepare
    from vida_eval.data.synth import synthesize
    from vida_eval.models.tiny import QWEN2_VL_2B, TinySpec, build_tiny_model

    cuda = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="vida-train-bench-"))
    spec = TinySpec() if args.shape == "tiny" else QWEN2_VL_2B
    dtype = "float32" if args.shape == "tiny" else "bfloat16"
    model = build_tiny_model(work / f"qwen2vl-{args.shape}", spec, dtype=dtype)
    from safetensors import safe_open

    params = 0
    for f in model.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            params += sum(_numel(st.get_slice(k).get_shape()) for k in st.keys())
    release = synthesize(work / "release", images=args.images, bench_images=2, seed=0)
    data = work / "data"
    data.mkdir()
    shutil.copy(ROOT / "dataset_info.json", data / "dataset_info.json")
    prepare(release, data / "vida_mini")
    card = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in card), None)
    rows = []
    cli = shutil.which("llamafactory-cli") or str(Path(sys.executable).with_name("llamafactory-cli"))
    for name in args.variants.split(","):
        out = work / f"out_{name}"
        overrides = {
            "model_name_or_path": str(model), "dataset": "vida_mini", "dataset_dir": str(data),
            "output_dir": str(out), "max_steps": str(args.steps), "per_device_train_batch_size": str(args.batch_size),
            "gradient_accumulation_steps": "1", "deepspeed": "null", "logging_steps": "1", "save_steps": "100000",
            "include_num_input_tokens_seen": "true", "preprocessing_num_workers": "4", "report_to": "none",
            "overwrite_output_dir": "true", "plot_loss": "false", "max_samples": str(args.steps * args.batch_size * 2),
            **VARIANTS[name],
        }
        if not cuda:
            overrides.update(bf16="false", tf32="false", use_cpu="true", image_max_pixels="50176", image_min_pixels="12544",
                             cutoff_len="768", dataloader_num_workers="0", preprocessing_num_workers="1")
        mem = GpuMemory()
        if cuda:
            mem.start()
        t = time.perf_counter()
        proc = subprocess.run([cli, "train", str(recipe(work)), *[f"{k}={v}" for k, v in overrides.items()]],
                              cwd=work, capture_output=True,
                              text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"})
        wall = time.perf_counter() - t
        mem.stop.set()
        if proc.returncode != 0:
            rows.append({"variant": name, "error": (proc.stderr or proc.stdout)[-400:].strip().splitlines()[-1]})
            print(f"{name}: failed: {rows[-1]['error']}", flush=True)
            continue
        res = json.loads((out / "all_results.json").read_text())
        log = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
        tokens = res.get("num_input_tokens_seen") or max((x.get("total_tokens", 0) for x in log), default=0)
        runtime = res["train_runtime"]
        row = {"variant": name, "samples_per_s": res["train_samples_per_second"], "tokens_per_s": tokens / runtime,
               "peak_mem_gib": mem.peak_mib / 1024 if cuda else None, "wall_s": wall,
               "first_loss": log[0].get("loss"),
               "last_loss": next((x["loss"] for x in reversed(log) if "loss" in x), None)}
        row["mfu"] = 4 * params * row["tokens_per_s"] / peak if peak else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\ncard: {card}; model {args.shape} ({params / 1e6:.1f}M parameters); {args.steps} steps x "
          f"batch {args.batch_size}")
    print(f"{'variant':<14}{'samples/s':>10}{'tokens/s':>11}{'peak GiB':>10}{'MFU':>8}")
    base = next((r for r in rows if "error" not in r), None)
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<14} failed: {r['error'][:80]}")
            continue
        mem_s = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base["tokens_per_s"] else float("nan")
        print(f"{r['variant']:<14}{r['samples_per_s']:>10.3f}{r['tokens_per_s']:>11.1f}{mem_s:>10}{mfu:>8}"
              f"   x{ratio:.2f} vs {base['variant']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"card": card, "params": params, "rows": rows}, indent=2))


def recipe(work: Path) -> Path:
    """configs/qwen2vl_2b_lora.yaml, with warmup_ratio as a fractional warmup_steps where transformers dropped it."""
    import yaml
    from transformers import TrainingArguments

    args = yaml.safe_load((ROOT / "configs" / "qwen2vl_2b_lora.yaml").read_text())
    if "warmup_ratio" not in TrainingArguments.__dataclass_fields__:
        args["warmup_steps"] = args.pop("warmup_ratio")
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(args))
    return path


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
