"""A `vida-eval eval` run against the floor of its work on this card.

Runs the evaluation (or reads a finished run with --run-only), then for each
engine-call group of ``timings.json`` counts the work its requests needed:
each image encoded once per pixel setting, each prompt prefilled, each answer
decoded (the tokens it really has). The card's dense bf16 rate and memory
bandwidth are measured in the same process (bench/floor.py) and each group's
time is printed as a multiple of its floor.

    python bench/eval_floor.py --model M --bench DIR --out runs/floor -- --backend vllm --max-new-tokens 320
    python bench/eval_floor.py --dummy-7b --bench DIR --out runs/floor -- --max-new-tokens 320
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor

IMAGE_END = "<|vision_end|>"


def request_tokens(run: Path, bench: str, model: str, pixels: str) -> dict[str, list[floor.RequestTokens]]:
    """Per task, each request's image (with its pixel setting), image tokens, prompt tokens and answer tokens."""
    from transformers import AutoProcessor

    from vida_eval.images import QWEN2_VL_MAX_PIXELS, QWEN2_VL_MIN_PIXELS, header, image_tokens
    from vida_eval.infer.runner import find_bench
    from vida_eval.infer.tasks import BUILDERS, with_pixels

    processor = AutoProcessor.from_pretrained(model)
    tok = processor.tokenizer
    image_end = tok.convert_tokens_to_ids(IMAGE_END)
    release, images, _ = find_bench(Path(bench))
    sizes: dict[Path, tuple[int, int]] = {}
    out = {}
    for task, builder in BUILDERS.items():
        path = run / f"{task}.json"
        if not path.is_file():
            continue
        answers = json.loads(path.read_text())
        requests = with_pixels(builder(release, images), pixels)
        rows = []
        for r, answer in zip(requests, answers):
            if r.image not in sizes:
                sizes[r.image] = header(r.image)[:2]
            lo, hi = r.min_pixels or QWEN2_VL_MIN_PIXELS, r.max_pixels or QWEN2_VL_MAX_PIXELS
            image = image_tokens(*sizes[r.image], lo, hi)
            prompt = processor.apply_chat_template(r.messages(), add_generation_prompt=True, tokenize=False)
            ids = tok(prompt + (r.assistant_prefix or ""))["input_ids"]  # one <|image_pad|> stands for the image
            answered = 1 if r.max_new_tokens == 0 else len(tok(answer.get("pred_ans") or "")["input_ids"])
            head = prompt[:prompt.index(IMAGE_END) + len(IMAGE_END)]  # system prompt and image: shared by key
            setting = f"{r.image}@{lo},{hi}"
            rows.append(floor.RequestTokens(setting, image, len(ids) - 1 + image, answered, f"{head}|{setting}",
                                            ids.index(image_end) + image))
        out[task] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model folder")
    which.add_argument("--dummy-7b", action="store_true", help="a Qwen2-VL-7B-shaped folder, random weights in vLLM")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/floor"))
    ap.add_argument("--run-only", action="store_true", help="read the finished run in --out, evaluate nothing")
    ap.add_argument("extra", nargs="*", help="more `vida-eval eval` options (after --)")
    args = ap.parse_args()
    model = args.model
    extra = list(args.extra)
    if args.dummy_7b:
        from vida_eval.models.tiny import QWEN2_VL_7B, build_tiny_model

        model = str(build_tiny_model(args.out.parent / "qwen2vl-7b-shape", QWEN2_VL_7B, weights=False))
        extra += ["--load-format", "dummy", "--backend", "vllm"]
    if not args.run_only:
        cmd = [sys.executable, "-m", "vida_eval", "eval", "--model", model, "--bench", args.bench, "--out",
               str(args.out), *extra]
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            return 1
    pixels = extra[extra.index("--pixels") + 1] if "--pixels" in extra else "official"
    tokens = request_tokens(args.out, args.bench, model, pixels)
    import torch

    if torch.cuda.is_available():
        card, name = floor.measure_card(), torch.cuda.get_device_name(0)
    else:  # a CPU run computes in float32
        card, name = floor.measure_card("cpu", 1024, 256 << 20, 3, "float32"), "cpu"
    shape = floor.Shape.from_model(model)
    timings = json.loads((args.out / "timings.json").read_text())
    rate, bandwidth = card["flops_per_s"], card["bytes_per_s"]
    print(f"\n{name}: dense {card['dtype']} {rate / 1e12:.2f} TFLOP/s, copy {bandwidth / 1e12:.2f} TB/s (measured)")
    print("floor: each image encoded once per setting, every prompt prefilled whole; shared: each system prompt "
          "and image prefilled once (a prefix cache's floor)")
    print(f"{'call group':<32}{'requests':>9}{'seconds':>9}{'floor':>8}{'vision':>8}{'prefill':>8}{'decode':>8}"
          f"{'x floor':>9}{'shared':>8}{'x shared':>9}")
    rows = {}
    for group, t in timings.items():
        if not isinstance(t, dict):  # engine start, report and total seconds
            continue
        reqs = [r for task in group.split("+") for r in tokens.get(task, [])]
        f = floor.floor_seconds(shape, reqs, rate, bandwidth)
        shared = floor.floor_seconds(shape, reqs, rate, bandwidth, share_prefixes=True)
        rows[group] = {**t, "floor": f, "times_floor": t["seconds"] / f["total_s"], "shared_prefix_floor": shared,
                       "times_shared_prefix_floor": t["seconds"] / shared["total_s"]}
        print(f"{group:<32}{t['requests']:>9}{t['seconds']:>9.1f}{f['total_s']:>8.1f}{f['vision_s']:>8.1f}"
              f"{f['prefill_s']:>8.1f}{f['decode_s']:>8.1f}{rows[group]['times_floor']:>9.2f}"
              f"{shared['total_s']:>8.1f}{rows[group]['times_shared_prefix_floor']:>9.2f}")
    print(f"engine start {timings.get('engine_start_seconds', float('nan')):.1f} s, scores and report "
          f"{timings.get('report_seconds', float('nan')):.1f} s; whole eval, engine start included: "
          f"{timings['total_seconds']:.1f} s")
    totals = {k: v for k, v in timings.items() if not isinstance(v, dict)}
    (args.out / "floor.json").write_text(json.dumps({"card": name, **card, "groups": rows, **totals}, indent=2)
                                         + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
