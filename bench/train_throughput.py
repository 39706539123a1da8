"""Training throughput of the challenge recipe on ViDA-shaped data, side by side across the levers, one GPU.

    python bench/train_throughput.py --shape 7b [--variants recipe,shared,...] [--json rows.json]
    python bench/train_throughput.py --shape tiny --images 2 --questions 12 --variants recipe,shared   # CPU check
    python bench/train_throughput.py --report a.json b.json   # one table of several runs on one machine

Data, shaped like the real release: ``data synth`` photo scenes with *--images* sizes taken from the real
ViDA-Bench table at evenly spaced quantiles of their image tokens at the recipe's limits (so a few images span
the real distribution), *--questions* records per image (the real release: 534K / 11,848 = 45), the nine
subsets' own answers. Every variant trains on the same samples in the same order (one pass, images one after
another, each image's questions by system prompt), so the rates compare the same work; the grouped variant
trains on the same questions as conversations (``prepare --group-by-image``).

Model: the shape's real architecture with random bf16 weights. Each variant is its own process running
``vida_eval.train.workflow.train`` (LLaMA-Factory's ``run_exp``; ``share_image_prefix`` through our plugin) on
``configs/qwen2vl_lora.yaml`` as shipped (LoRA r64 on the language model and vision blocks, merger trained,
bf16, sdpa, gradient checkpointing, 2 per device x 8 accumulation) plus the variant's keys, DeepSpeed off.

Counted in that process on the model's outermost forward and on the vision tower's, over every step after the
first: trained answers (runs of trained labels: one per question, also inside shared rows and conversations),
language-model tokens T and attended (query, key) pairs A, vision patches P_i per encoded image. Model FLOPs
of those steps (``floor``'s per-layer counts; h hidden, k kv width, i intermediate, n layers, V vocabulary;
d, r, D the vision tower's width, mlp ratio and depth):

    linear    = n 2 T (2h^2 + 2hk + 3hi) + 2 T h V                    language model, logits at every position
              + sum_i [2 P_i 1176 d + D 2 P_i d^2 (4 + 2r) + 2 (P_i/4) ((4d)^2 + 4dh)]   vision tower, merger
    attention = n 4 h A + sum_i D 4 P_i^2 d
    training  = 2 linear + 3 attention

(the base weights are frozen: backward computes input gradients, about one forward of the linear layers, and
attention's backward about two of its forward; LoRA's own small matmuls and checkpointing's recomputation are
not counted). MFU = training FLOPs / seconds / 989 TFLOP/s (H100/H200 dense bf16); the floor is the same
FLOPs at the matmul rate measured in this run. Projected epoch of 534,000 samples on 8 cards = 534,000 /
(8 x samples/s), data parallel without communication cost; on 8 H20 that time x 989 / 148.

``--resume`` keeps the rows of an earlier run's ``--json`` file (same data, shape and card) and measures only the
variants it lacks, so that a long list of variants can be measured side by side over several calls.

``--profile N`` records steps 2..N+1 with the PyTorch profiler before the timed steps (which then start after
step N+1): device time by kind of kernel (attention, matmul, loss, copies, the rest), the share of the window
the device was busy, the host's operators by their own time, and the rate the matmul and attention kernels
reached on the FLOPs counted in the window (2 linear and 3 attention as above; LoRA's matmuls and
checkpointing's recomputation run in the matmul kernels uncounted, so that rate is the useful one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Each variant: the recipe plus these keys. The shared rows take the 16 samples of one recipe step in one
# micro-batch (same samples per optimizer step: 2 x 8 accumulation = 16 x 1).
SHARED = {"share_image_prefix": True, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1}
GROUPED = {"dataset": "vida_bench_grouped", "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1}
LIGER, NO_GC = {"enable_liger_kernel": True}, {"disable_gradient_checkpointing": True}
# cuDNN's attention plans each new sequence shape on the host (the profile's aten::_cudnn_attention_* self
# time); the no_cudnn variants leave PyTorch's flash and memory-efficient kernels to scaled_dot_product_attention
# (on the H200 they were slower: the shared rows' 4-D mask leaves only the memory-efficient kernel).
NO_CUDNN = {"sdpa_cudnn": False}
VARIANTS = {
    "recipe": {},
    "no_gc": NO_GC,
    "liger": LIGER,
    "no_gc_liger": {**NO_GC, **LIGER},
    "shared": SHARED,
    "shared_liger": {**SHARED, **LIGER},
    "shared_no_gc_liger": {**SHARED, **LIGER, **NO_GC},
    "shared_no_cudnn": {**SHARED, **NO_CUDNN},
    "grouped": GROUPED,
    "grouped_liger": {**GROUPED, **LIGER},
    "grouped_no_gc_liger": {**GROUPED, **LIGER, **NO_GC},
    "grouped_no_cudnn": {**GROUPED, **NO_CUDNN},
}
# Every variant but the conversations keeps each sample's loss and gradients as they are alone.
EXACT = tuple(name for name, keys in VARIANTS.items() if keys.get("dataset") != GROUPED["dataset"])
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H20": 148e12}
EPOCH = 534_000
IGNORE = -100


# ------------------------------------------------------------ counting FLOPs

class FlopCounter:
    """Model FLOPs and trained answers of every forward the trainer runs (the formula in the module doc)."""

    def __init__(self, config):
        from bench.floor import MERGE, PATCH_VOLUME, Shape

        self.shape = Shape.from_config(config.to_dict())
        self.merge, self.patch_volume = MERGE, PATCH_VOLUME
        self.totals = dict.fromkeys(("answers", "tokens", "pairs", "patches", "images", "linear", "attention"), 0.0)

    def language(self, module, args, kwargs):
        """Pre-hook of the model's forward: trained answers, tokens and attended pairs of the language model."""
        import torch

        labels, mask = kwargs.get("labels"), kwargs.get("attention_mask")
        if labels is None:
            return
        s, t = self.shape, self.totals
        trained = labels != IGNORE
        t["answers"] += int((trained[:, 1:] & ~trained[:, :-1]).sum() + trained[:, 0].sum())
        if mask is not None and mask.dim() == 4:  # shared rows: every real token sees its row's first one
            tokens, pairs = int((mask[:, 0, :, 0] == 0).sum()), int((mask == 0).sum())
        else:
            lengths = mask.sum(-1) if mask is not None else torch.full((labels.shape[0],), labels.shape[1])
            tokens, pairs = int(lengths.sum()), int((lengths * (lengths + 1) // 2).sum())
        h, k, i = s.hidden, s.kv_dim, s.intermediate
        t["linear"] += s.layers * 2 * tokens * (2 * h * h + 2 * h * k + 3 * h * i) + 2 * tokens * h * s.vocab
        t["attention"] += s.layers * 4 * h * pairs
        t["tokens"] += tokens
        t["pairs"] += pairs

    def vision(self, module, args, kwargs):
        """Pre-hook of the vision tower's forward: its patches, and attention over each image's own."""
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        s, t = self.shape, self.totals
        d, r, h = s.vision_dim, s.vision_mlp_ratio, s.hidden
        for p in grid.prod(-1).tolist():
            t["linear"] += (2 * p * self.patch_volume * d + s.vision_depth * 2 * p * d * d * (4 + 2 * r)
                            + 2 * (p // self.merge) * ((self.merge * d) ** 2 + self.merge * d * h))
            t["attention"] += s.vision_depth * 4 * p * p * d
            t["patches"] += p
            t["images"] += 1

    def training_flops(self) -> float:
        return 2 * self.totals["linear"] + 3 * self.totals["attention"]


# Kinds of kernel (CUDA) or operator (CPU) by name, the first match wins ("fmha_cutlassF" is attention).
KERNEL_KINDS = (("attention", ("flash", "fmha", "attention", "attn", "sdpa")),
                ("loss", ("cross_entropy", "log_softmax", "nll_loss", "liger")),
                ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "aten::mm", "aten::bmm", "aten::addmm",
                            "aten::matmul", "aten::linear")),
                ("copy", ("memcpy", "memset", "copy", "aten::cat", "index", "gather", "scatter")))


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals, in their unit."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarize_profile(prof, cuda: bool, window_s: float, flops: dict, top: int = 12) -> dict:
    """Device time by kernel kind over a profiled window (CPU: operators' self time), its busy share, and the
    rate of the matmul and attention kernels on the window's counted FLOPs."""
    from torch.autograd import DeviceType

    times: dict[str, float] = {}
    host: dict[str, float] = {}
    spans = []
    for e in prof.events():
        if e.device_type == DeviceType.CPU:
            host[e.name] = host.get(e.name, 0.0) + e.self_cpu_time_total / 1e6
        if cuda and e.device_type == DeviceType.CUDA:
            spans.append((e.time_range.start, e.time_range.end))
            times[e.name] = times.get(e.name, 0.0) + e.time_range.elapsed_us() / 1e6
    if not cuda:
        times = host
    kinds = dict.fromkeys(("attention", "matmul", "loss", "copy", "other"), 0.0)
    for name, sec in times.items():
        kinds[kernel_kind(name)] += sec
    out = {"window_s": window_s, "kinds_s": kinds,
           "top": [[name[:90], sec] for name, sec in sorted(times.items(), key=lambda kv: -kv[1])[:top]]}
    if cuda:  # and where the host spends the window (waiting for data shows as the data loader's self time)
        out["busy_s"] = busy_seconds(spans) / 1e6
        out["host_top"] = [[name[:90], sec] for name, sec in sorted(host.items(), key=lambda kv: -kv[1])[:top]]
    if kinds["matmul"]:
        out["matmul_flops_per_s"] = 2 * flops["linear"] / kinds["matmul"]
    if kinds["attention"]:
        out["attention_flops_per_s"] = 3 * flops["attention"] / kinds["attention"]
    return out


def run_one(config_path: Path, result: Path, profile_steps: int = 0) -> None:
    """One variant in this process: LLaMA-Factory's training with a counter on the model, timed after step 1
    (after step 1 + *profile_steps* when those are profiled)."""
    import torch
    from transformers import TrainerCallback

    from vida_eval.train.workflow import train

    cuda = torch.cuda.is_available()

    class Measure(TrainerCallback):
        def __init__(self):
            self.counter, self.start, self.base = None, None, None
            self.prof, self.profile = None, None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            inner = model.get_base_model() if hasattr(model, "get_base_model") else model
            self.counter = FlopCounter(inner.config)
            model.register_forward_pre_hook(self.counter.language, with_kwargs=True)
            visual = getattr(getattr(inner, "model", inner), "visual", None) or inner.visual
            visual.register_forward_pre_hook(self.counter.vision, with_kwargs=True)

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            if state.global_step == 1 and profile_steps:
                from torch.profiler import ProfilerActivity, profile

                self.prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))
                self.prof.__enter__()
                self.pstart, self.pbase = time.perf_counter(), dict(self.counter.totals)
            if state.global_step == 1 + profile_steps:  # the first step carries compilation and warm-up
                if self.prof is not None:
                    window = time.perf_counter() - self.pstart
                    self.prof.__exit__(None, None, None)
                    counted = {k: self.counter.totals[k] - self.pbase[k] for k in ("linear", "attention")}
                    try:
                        self.profile = summarize_profile(self.prof, cuda, window, counted)
                    except Exception as e:  # noqa: BLE001 - the timed steps still count without a profile
                        self.profile = {"error": repr(e), "window_s": window}
                    self.profile["steps"] = profile_steps
                    self.prof = None
                self.start, self.base = time.perf_counter(), dict(self.counter.totals)
                self.base["flops"] = self.counter.training_flops()
                self.first = state.global_step
            self.steps = state.global_step

        def on_train_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            t = self.counter.totals
            if self.start is None or self.steps == self.first:
                raise SystemExit(f"{self.steps} steps: none left to time after step {1 + profile_steps}")
            seconds = time.perf_counter() - self.start
            row = {k: t[k] - self.base[k] for k in t}
            row.update(seconds=seconds, steps=self.steps - self.first,
                       cudnn_sdp=torch.backends.cuda.cudnn_sdp_enabled(),
                       flops=self.counter.training_flops() - self.base["flops"])
            if self.profile:
                row["profile"] = self.profile
            if cuda:
                row.update(peak_allocated=torch.cuda.max_memory_allocated(),
                           peak_reserved=torch.cuda.max_memory_reserved())
            result.write_text(json.dumps(row))

    train(json.loads(config_path.read_text()), callbacks=[Measure()])


# ------------------------------------------------------------ data and model

def quantile_sizes(recipe, n: int) -> list[tuple[int, int]]:
    """*n* ViDA-Bench sizes at evenly spaced quantiles of their image tokens at *recipe*'s limits."""
    from vida_eval.data.sizes import VIDA_BENCH_SIZES, sizes_in_order

    ranked = sorted(sizes_in_order(VIDA_BENCH_SIZES), key=lambda s: recipe.image_tokens(*s))
    return [ranked[int((k + 0.5) * len(ranked) / n)] for k in range(n)]


def build_data(work: Path, recipe, images: int, questions: int, seed: int) -> dict:
    """The synthetic release, its prepared files, and the two datasets every variant reads, image by image."""
    from collections import Counter

    from vida_eval.data.grouping import TURN_ORDER
    from vida_eval.data.prepare import prepare
    from vida_eval.data.synth import synthesize

    sizes = quantile_sizes(recipe, images)
    data = work / "data"
    tokens = [recipe.image_tokens(*s) for s in sizes]
    done = data / "done.json"
    if done.is_file() and json.loads(done.read_text())["key"] == [images, questions, seed, str(recipe.path)]:
        return {**json.loads(done.read_text())["data"], "data": data}  # an earlier run's, reused with its tokens
    release = synthesize(work / "release", images=images, bench_images=1, seed=seed, sizes=sizes,
                         train_sizes=dict(Counter(sizes)), questions=questions)
    prepare(release, data / "vida", recipe=recipe, group_by_image=questions)
    order = {}
    for name in TURN_ORDER:
        for line in (data / "vida" / f"{name}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            order.setdefault(rec["images"][0], []).append(line)
    with open(data / "bench_order.jsonl", "w", encoding="utf-8") as f:
        for lines in order.values():
            f.writelines(x + "\n" for x in lines)
    rank = {img: k for k, img in enumerate(order)}
    grouped = sorted((data / "vida" / "vida_grouped.jsonl").read_text().splitlines(),
                     key=lambda x: rank[json.loads(x)["images"][0]])
    (data / "bench_grouped.jsonl").write_text("".join(x + "\n" for x in grouped))
    base = json.loads((ROOT / "dataset_info.json").read_text())["vida_combined"]
    (data / "dataset_info.json").write_text(json.dumps({
        "vida_bench_order": {**base, "file_name": "bench_order.jsonl"},
        "vida_bench_grouped": {**base, "file_name": "bench_grouped.jsonl"}}, indent=2))
    out = {"sizes": sizes, "image_tokens": tokens, "samples": sum(len(v) for v in order.values()),
           "conversations": len(grouped)}
    done.write_text(json.dumps({"key": [images, questions, seed, str(recipe.path)], "data": out}))
    return {**out, "data": data}


def variant_config(recipe, name: str, model: Path, data: Path, out: Path, cpu: bool) -> dict:
    from transformers import TrainingArguments

    args = dict(recipe.args)
    for key in ("deepspeed", "max_steps"):
        args.pop(key, None)
    if "warmup_ratio" not in TrainingArguments.__dataclass_fields__ and "warmup_ratio" in args:
        args["warmup_steps"] = args.pop("warmup_ratio")  # newer transformers: a ratio given as warmup_steps
    args.update(model_name_or_path=str(model), dataset="vida_bench_order", dataset_dir=str(data),
                output_dir=str(out), num_train_epochs=1, save_strategy="no", logging_steps=1,
                overwrite_cache=True, report_to="none", plot_loss=False, overwrite_output_dir=True,
                disable_shuffling=True, preprocessing_num_workers=min(16, os.cpu_count() or 1))
    args.update(VARIANTS[name])
    args["tokenized_path"] = str(data / "tokenized" / args["dataset"])  # tokenized once per dataset
    if cpu:
        args.update(use_cpu=True, bf16=False, tf32=False, dataloader_num_workers=0, preprocessing_num_workers=1,
                    enable_liger_kernel=False)
    return args


def main(argv=None) -> int:
    from vida_eval.train.recipe import load_recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "configs" / "qwen2vl_lora.yaml"))
    p.add_argument("--shape", default="7b", choices=("7b", "2b", "tiny"))
    p.add_argument("--variants", default="recipe,no_gc,liger,shared,shared_liger,grouped")
    p.add_argument("--images", type=int, default=6, help="training images, at quantiles of the real sizes")
    p.add_argument("--questions", type=int, default=45, help="records per image (real: 45)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/train_throughput")
    p.add_argument("--json", help="write the rows here (after every variant)")
    p.add_argument("--resume", action="store_true",
                   help="keep the --json file's rows of this data, shape and card; run only the other variants")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the table of earlier runs' --json files")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile steps 2..N+1 of each variant (kernel time by kind); timing starts after them")
    p.add_argument("--run-one", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.run_one:
        run_one(Path(a.run_one[0]), Path(a.run_one[1]), a.profile)
        return 0
    if a.report:
        rows = [r for f in a.report for r in json.loads(Path(f).read_text())["rows"]]
        report(rows, next((v for k, v in PEAK_BF16.items() if k in rows[0]["card"]), None))
        return 0
    bad = [v for v in a.variants.split(",") if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant {bad[0]} (choose from {', '.join(VARIANTS)})")

    from bench.train_memory import build_model

    work = Path(a.work).resolve()
    cpu = a.shape == "tiny"
    model = build_model(a.shape, work / f"model-{a.shape}")
    recipe = load_recipe(a.recipe, [f"model_name_or_path={model}"])
    if cpu:
        recipe = load_recipe(ROOT / "configs" / "tiny_lora.yaml", [f"model_name_or_path={model}"])
    data = build_data(work, recipe, a.images, a.questions, a.seed)
    card, peak, rate = "cpu", None, None
    if not cpu:
        import torch

        from bench.floor import measure_card

        card = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16.items() if k in card), None)
        rate = measure_card()["flops_per_s"]
        torch.cuda.empty_cache()
    mean_tokens = sum(data["image_tokens"]) / len(data["image_tokens"])
    print(f"{a.shape} shape on {card}; {a.images} images of {[f'{w}x{h}' for w, h in data['sizes']]} = "
          f"{data['image_tokens']} image tokens (mean {mean_tokens:.0f}), {data['samples']} samples "
          f"({a.questions} per image), {data['conversations']} grouped conversations"
          + (f"; matmul {rate / 1e12:.0f} TFLOP/s measured" if rate else ""), flush=True)
    kept = {}
    summary = {k: v for k, v in data.items() if k != "data"}
    if a.resume and a.json and Path(a.json).is_file():
        earlier = json.loads(Path(a.json).read_text())
        if earlier.get("data") == json.loads(json.dumps(summary)):  # the same images, questions and tokens
            kept = {r["variant"]: r for r in earlier["rows"]
                    if "error" not in r and r.get("card") == card and r.get("shape") == a.shape}
        print(f"resumed from {a.json}: {', '.join(kept) or 'no row'} kept", flush=True)

    def save(rows):  # after every variant: a run cut short keeps what it measured
        if a.json:
            Path(a.json).write_text(json.dumps({"data": summary, "rows": rows}, indent=2, default=str) + "\n")

    rows = []
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")}
    for name in a.variants.split(","):
        if name in kept:
            rows.append(kept[name])
            save(rows)
            continue
        out = work / f"run-{name}"
        out.mkdir(parents=True, exist_ok=True)
        config, result = out / "config.json", out / "result.json"
        config.write_text(json.dumps(variant_config(recipe, name, model, data["data"], out, cpu)))
        result.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--run-one", str(config), str(result),
                               "--profile", str(a.profile)],
                              env=env, capture_output=True, text=True, check=False)
        row = {"variant": name, "keys": VARIANTS[name], "wall_s": round(time.perf_counter() - start, 1),
               "shape": a.shape, "card": card}
        if proc.returncode != 0 or not result.is_file():
            text = proc.stdout + proc.stderr
            row["error"] = "out of memory" if "out of memory" in text.lower() else text[-1200:]
        else:
            r = json.loads(result.read_text())
            row.update(r, samples_per_s=r["answers"] / r["seconds"], tokens_per_s=r["tokens"] / r["seconds"])
            if peak:
                row["mfu"] = r["flops"] / r["seconds"] / peak
            if rate:
                row["x_floor"] = r["seconds"] / (r["flops"] / rate)
        rows.append(row)
        save(rows)
        print(json.dumps({k: v for k, v in row.items() if k != "error"} | ({"error": row["error"][-300:]}
                                                                           if "error" in row else {})), flush=True)
    report(rows, peak)
    return 0 if all("error" not in r for r in rows) else 1


def report(rows: list[dict], peak: float | None) -> None:
    base = next((r for r in rows if r["variant"] == "recipe" and "error" not in r), None)
    print(f"\n{'variant':<20}{'samples/s':>10}{'x recipe':>9}{'LM tok/s':>10}{'img/step':>9}{'MFU':>7}"
          f"{'x floor':>8}{'peak GiB':>9}{'8 GPUs h':>9}{'8 H20 h':>8}  exact")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<20} failed: {r['error'][-100:]!r}")
            continue
        ratio = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        hours = EPOCH / (8 * r["samples_per_s"]) / 3600
        h20 = hours * PEAK_BF16["H100"] / PEAK_BF16["H20"] if peak else float("nan")
        mem = r.get("peak_reserved", 0) / (1 << 30)
        print(f"{r['variant']:<20}{r['samples_per_s']:>10.2f}{ratio:>9.2f}{r['tokens_per_s']:>10.0f}"
              f"{r['images'] / max(r['steps'], 1):>9.1f}{100 * r.get('mfu', 0):>6.1f}%{r.get('x_floor', 0):>8.2f}"
              f"{mem:>9.1f}{hours:>9.2f}{h20:>8.1f}  {'yes' if r['variant'] in EXACT else 'no'}")
    for r in rows:
        if "profile" in r and "error" in r["profile"]:
            print(f"\n{r['variant']}: no profile ({r['profile']['error']})")
        elif "profile" in r:
            print_profile(r["variant"], r["profile"])


def print_profile(variant: str, prof: dict) -> None:
    kinds, total = prof["kinds_s"], sum(prof["kinds_s"].values()) or 1.0
    busy = f"device busy {prof['busy_s'] / prof['window_s']:.0%} of " if "busy_s" in prof else ""
    print(f"\n{variant}: {prof['steps']} profiled steps, {busy}{prof['window_s']:.2f} s; kernel time "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in kinds.items())
          + "".join(f"; {k} kernels {prof[f'{k}_flops_per_s'] / 1e12:.0f} TFLOP/s" for k in ("matmul", "attention")
                    if f"{k}_flops_per_s" in prof))
    for name, sec in prof["top"]:
        print(f"  {sec / total:6.1%}  {kernel_kind(name):<9} {name}")
    for name, sec in prof.get("host_top", []):
        print(f"  host {sec:7.3f} s  {name}")


if __name__ == "__main__":
    sys.exit(main())
