"""Inference throughput on a ViDA-Bench-shaped request mix, three ways, on one GPU in one run.

(a) the seed-style loop: transformers ``generate``, one request at a time
    (timed on a subset per task kind and extrapolated);
(b) a bare ``vllm.LLM.generate`` over all requests at once;
(c) our vllm backend as ``make eval`` drives it (requests, locality ordering,
    answer cache, parsing into prediction records).

The model is Qwen2-VL-7B-shaped with random weights (vLLM ``load_format="dummy"``,
transformers random init on the GPU); output lengths are fixed (min = max
tokens, end-of-turn ignored), so throughput does not depend on the weights.
Each measured pass uses fresh images, so no pass profits from another's caches.

    python bench/infer_throughput.py [--full-bench] [--skip-hf]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval import prompts
from vida_eval.infer.tasks import Request, to_prediction

KINDS = {  # kind: (count in the mix, output tokens)
    "mcq": (96, 3),
    "grounding": (48, 64),
    "description": (16, 320),
}


SIZE_SEED = 0  # every pass draws the same sizes: passes compared side by side do the same work


def make_images(folder: Path, n: int, tag: str, sizes) -> list[Path]:
    """*n* synthetic scenes with sizes from *sizes* (a table's exact distribution when *n* is its count); the
    *i*-th image of every tag has the same size, its scene is the tag's own."""
    import numpy as np
    from PIL import Image

    from vida_eval.data.sizes import draw_size
    from vida_eval.data.synth import draw_scene, exact_sizes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    seed = sum(map(ord, tag))
    for i, size in enumerate(exact_sizes(SIZE_SEED, n, sizes)):
        rng = np.random.default_rng([seed, i])
        scene = draw_scene(rng, *(size or draw_size(np.random.default_rng([SIZE_SEED, i]), sizes)))
        p = folder / f"{tag}_{i:04d}.jpg"
        Image.fromarray(scene.image).save(p, quality=92)
        paths.append(p)
    return paths


def mix(images: list[Path], counts: dict[str, tuple[int, int]]) -> list[Request]:
    """Requests of each kind spread over the images, each image used by several questions."""
    reqs = []
    k = 0
    for kind, (count, tokens) in counts.items():
        for _ in range(count):
            image = images[k % len(images)]
            rec = {"id": k, "image": image.name}
            if kind == "mcq":
                cands = ["the sky", "the road", "the tree", "the car"]
                r = Request("perception", dict(rec, candidates=cands), image,
                            prompts.perception_question("Which region is the most blurred?", cands), None, tokens,
                            prompts.PERCEPTION_MIN_PIXELS, prompts.PERCEPTION_MAX_PIXELS)
            elif kind == "grounding":
                r = Request("grounding", dict(rec, question_type="distortion-detection"), image,
                            prompts.DETECTION_QUESTION, prompts.GROUNDING_SYSTEM, tokens)
            elif kind == "scoring":
                r = Request("scoring", rec, image, prompts.SCORING_USER, prompts.SCORING_SYSTEM, 0,
                            assistant_prefix=prompts.SCORING_ASSISTANT_PREFIX)
            else:
                r = Request("description", rec, image, prompts.DESCRIPTION_USER, prompts.DESCRIPTION_SYSTEM, tokens)
            r.fixed_length = kind != "scoring"
            reqs.append(r)
            k += 1
    return reqs


def out_tokens(reqs: list[Request]) -> int:
    return sum(r.max_new_tokens for r in reqs)


def seed_loop(model_dir: Path, reqs: list[Request], per_kind: int) -> dict:
    """Transformers generate, one request at a time; per-kind mean time extrapolated to the mix."""
    import torch
    from transformers import AutoProcessor, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from vida_eval.images import load_image

    processor = AutoProcessor.from_pretrained(model_dir)
    config = Qwen2VLConfig.from_pretrained(model_dir)
    t = time.perf_counter()
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16,
                                                             attn_implementation="sdpa").eval()
    init_s = time.perf_counter() - t
    per = {}
    for kind_task in ("perception", "grounding", "description"):
        sample = [r for r in reqs if r.task == kind_task][:per_kind]
        times = []
        for j, r in enumerate(sample):
            text = processor.apply_chat_template(r.messages(), add_generation_prompt=True, tokenize=False)
            size = r.image_size_kwargs
            inputs = processor(text=[text], images=[load_image(r.image)], return_tensors="pt",
                               **({"images_kwargs": size} if size else {})).to("cuda")
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.no_grad():
                model.generate(**inputs, max_new_tokens=r.max_new_tokens, min_new_tokens=r.max_new_tokens,
                               do_sample=False)
            torch.cuda.synchronize()
            if j or len(sample) == 1:  # the first generate of a kind pays one-off warm-up
                times.append(time.perf_counter() - t)
        per[kind_task] = sum(times) / len(times)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    total = sum(per[r.task] for r in reqs)
    return {"init_s": init_s, "per_request_s": per, "extrapolated_s": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--seed-per-kind", type=int, default=5, help="(a): timed requests per kind")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--full-bench", action="store_true",
                    help="also time the real-shaped bench: 2567 MCQ, 1402 grounding, 476 descriptions, 476 scorings")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    ap.add_argument("--shape", choices=("7b", "tiny"), default="7b",
                    help="tiny: the tiny random model with smaller images (a quick check on a CPU)")
    ap.add_argument("--sizes", default=None,
                    help="image sizes: vida-bench (default for 7b: the real bench's sizes), small (default for tiny) "
                         "or WxH[,WxH...]")
    args = ap.parse_args()

    import torch

    from vida_eval.images import load_image
    from vida_eval.infer.backends import VLLMBackend
    from vida_eval.infer.runner import AnswerCache, run_requests
    from vida_eval.models.tiny import QWEN2_VL_7B, TinySpec, build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="vida-bench-"))
    tiny = args.shape == "tiny"
    model_dir = build_tiny_model(work / f"qwen2vl-{args.shape}", TinySpec() if tiny else QWEN2_VL_7B, weights=tiny)
    from vida_eval.data.sizes import parse_sizes

    sizes_name = args.sizes or ("small" if tiny else "vida-bench")
    sizes = parse_sizes(sizes_name)
    sets = {tag: make_images(work / "images", args.images, tag, sizes) for tag in ("warm", "a", "b", "c")}
    from vida_eval.images import QWEN2_VL_MAX_PIXELS, QWEN2_VL_MIN_PIXELS, header, image_tokens

    pass_tokens = {tag: sum(image_tokens(*header(p)[:2], QWEN2_VL_MIN_PIXELS, QWEN2_VL_MAX_PIXELS) for p in paths)
                   for tag, paths in sets.items()}
    assert len(set(pass_tokens.values())) == 1, pass_tokens  # the passes compared do the same work
    cuda = torch.cuda.is_available()
    result: dict = {"card": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
                    "mix": KINDS, "shape": args.shape, "sizes": sizes_name,
                    "image_tokens_per_pass": pass_tokens["b"]}

    reqs_a = mix(sets["a"], KINDS)
    n = len(reqs_a)
    if not args.skip_hf and cuda:
        result["a_seed_loop"] = seed_loop(model_dir, reqs_a, args.seed_per_kind)
        print(f"(a) seed loop: {result['a_seed_loop']}", flush=True)

    import vllm

    result["vllm"] = vllm.__version__
    t = time.perf_counter()
    # A 3120x4160 photo is 16,320 image tokens at the official limits; the description prompt and answer come on top.
    backend = VLLMBackend(str(model_dir), load_format="auto" if tiny else "dummy", gpu_memory_utilization=0.85,
                          max_model_len=8192 if tiny else 20480)
    result["engine_start_s"] = time.perf_counter() - t
    llm = backend.llm

    def bare(reqs):
        items = [backend.inputs(r, load_image(r.image)) for r in reqs]
        params = [backend.sampling(r) for r in reqs]
        t = time.perf_counter()
        llm.generate(items, params, use_tqdm=False)
        return time.perf_counter() - t

    t = time.perf_counter()
    bare(mix(sets["warm"], KINDS))
    result["warmup_s"] = time.perf_counter() - t

    b_s = bare(mix(sets["b"], KINDS))
    t = time.perf_counter()
    reqs_c = mix(sets["c"], KINDS)
    outputs, _ = run_requests(reqs_c, backend, AnswerCache(work / "cache_c.jsonl"), chunk_size=512, progress=False)
    [to_prediction(r, o) for r, o in zip(reqs_c, outputs)]
    c_s = time.perf_counter() - t
    tokens = out_tokens(reqs_c)
    result["b_bare_vllm"] = {"seconds": b_s, "req_per_s": n / b_s, "out_tok_per_s": tokens / b_s}
    result["c_our_backend"] = {"seconds": c_s, "req_per_s": n / c_s, "out_tok_per_s": tokens / c_s}
    result["ratio_c_over_b"] = b_s / c_s
    print(f"(b) {result['b_bare_vllm']}\n(c) {result['c_our_backend']}\nengine start {result['engine_start_s']:.1f} s, "
          f"warm-up {result['warmup_s']:.1f} s", flush=True)
    if "a_seed_loop" in result:
        a_s = result["a_seed_loop"]["extrapolated_s"]
        result["a_seed_loop"].update(req_per_s=n / a_s, out_tok_per_s=tokens / a_s)
        result["ratio_b_over_a"] = a_s / b_s
        result["ratio_c_over_a"] = a_s / c_s

    if args.full_bench:
        full_counts = {"mcq": (2567, 3), "grounding": (1402, 64), "description": (476, 320), "scoring": (476, 0)}
        images = make_images(work / "images", 476, "full", sizes)
        reqs = mix(images, full_counts)
        t = time.perf_counter()
        outputs, _ = run_requests(reqs, backend, AnswerCache(work / "cache_full.jsonl"), chunk_size=2048,
                                  progress=False)
        [to_prediction(r, o) for r, o in zip(reqs, outputs)]
        full_s = time.perf_counter() - t
        result["full_bench"] = {"requests": len(reqs), "seconds": full_s,
                                "with_engine_start_s": full_s + result["engine_start_s"] + result["warmup_s"]}

    print(json.dumps(result, indent=2, default=str))
    print(f"\ncard: {result['card']}; images: {sizes_name} sizes, the same in every pass ({args.images} images, "
          f"{pass_tokens['b']} image tokens at the official limits); {n} requests, {tokens} output tokens per pass")
    if "a_seed_loop" in result:
        a = result["a_seed_loop"]
        print(f"(a) seed loop     : {a['req_per_s']:8.3f} req/s {a['out_tok_per_s']:9.1f} tok/s (extrapolated)")
    print(f"(b) bare vLLM     : {result['b_bare_vllm']['req_per_s']:8.3f} req/s "
          f"{result['b_bare_vllm']['out_tok_per_s']:9.1f} tok/s")
    print(f"(c) our backend   : {result['c_our_backend']['req_per_s']:8.3f} req/s "
          f"{result['c_our_backend']['out_tok_per_s']:9.1f} tok/s")
    print(f"(c)/(b) = {result['ratio_c_over_b']:.3f} (target >= 0.95)"
          + (f"; (b)/(a) = {result['ratio_b_over_a']:.1f}x; (c)/(a) = {result['ratio_c_over_a']:.1f}x"
             if "ratio_b_over_a" in result else ""))
    if "full_bench" in result:
        f = result["full_bench"]
        print(f"full bench: {f['requests']} requests in {f['seconds']:.1f} s; with engine start and warm-up "
              f"{f['with_engine_start_s']:.1f} s (target < 300 s)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
