"""A training step with logits at every position against logits at the answer tokens only (``answer_logits_only``).

    python bench/answer_logits.py --shape 7b      # one GPU
    python bench/answer_logits.py --shape tiny    # CPU

The model has the shape's real architecture, random weights and Qwen2's 152K vocabulary; the trained weights are
those the challenge recipe trains (everything but the embedding and the head: the LoRA recipe's gradients reach the
same activations). The samples have ViDA's real shapes: the image sizes the bench has most and largest, at the
recipe's pixel limits (256..8,192 tokens), the real prompt lengths (86 text tokens) and answer lengths (32 tokens,
the mean of the synthetic release's answers; 320 for a description), and a conversation of 45 questions about one
image (the release's questions per image). Each case runs the stock forward and the answer-only one on the same
batch, side by side, and prints the step time (forward and backward, median of the timed steps), the ratio, the
peak memory of each and the difference of their losses.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT_TOKENS = 86  # system prompt, chat markup and question of a synthetic sample, mean
ANSWER_TOKENS = 32
# (name, image token grid h x w at the recipe's limits, questions, answer tokens each)
CASES = [
    ("720x1280 photo, one MCQ-length answer", (46, 26), 1, ANSWER_TOKENS),
    ("720x1280 photo, a description", (46, 26), 1, 320),
    ("3120x4160 photo (8,064 tokens), one answer", (112, 72), 1, ANSWER_TOKENS),
    ("720x1280 photo, 45 questions as one conversation", (46, 26), 45, ANSWER_TOKENS),
]


def build(shape: str, device: str):
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    from vida_eval.models.tiny import QWEN2_VL_7B, TinySpec, build_tiny_model

    spec = {"7b": QWEN2_VL_7B, "tiny": TinySpec()}[shape]
    folder = build_tiny_model(Path(tempfile.mkdtemp()) / shape, spec, weights=False)
    config = AutoConfig.from_pretrained(folder)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.gradient_checkpointing_enable()
    model.train()
    for name, p in model.named_parameters():
        p.requires_grad_("embed_tokens" not in name and "lm_head" not in name)
    return model, config, dtype


def batch(config, grid: tuple[int, int], questions: int, answer: int, device: str, dtype):
    """One row: system prompt, image, then *questions* question/answer turns (labels on the answers only)."""
    import torch

    from vida_eval.train.answer_logits import IGNORE_INDEX

    gen = torch.Generator().manual_seed(0)
    h, w = grid
    image_tokens = h * w

    def text(n: int) -> list[int]:
        return torch.randint(1000, 100000, (n,), generator=gen).tolist()

    ids = text(20) + [config.vision_start_token_id] + [config.image_token_id] * image_tokens + [config.vision_end_token_id]
    labels = [IGNORE_INDEX] * len(ids)
    for _ in range(questions):
        q, a = text(PROMPT_TOKENS - 22), text(answer)
        ids += q + a
        labels += [IGNORE_INDEX] * len(q) + a
    pixels = torch.randn(image_tokens * 4, 3 * 2 * 14 * 14, generator=gen)  # 4 patches of 2 x 14 x 14 a token
    input_ids = torch.tensor([ids], device=device)
    return {"input_ids": input_ids, "labels": torch.tensor([labels], device=device),
            "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": (input_ids == config.image_token_id).int(),
            "pixel_values": pixels.to(device, dtype), "image_grid_thw": torch.tensor([[1, 2 * h, 2 * w]], device=device)}


def step(model, inputs, device: str, steps: int) -> tuple[float, float, float]:
    """(median seconds of a forward and backward, peak GiB, loss)."""
    import torch

    times, loss = [], 0.0
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(**inputs)
        out.loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms the kernels up
            times.append(time.perf_counter() - start)
        loss = out.loss.item()
        model.zero_grad(set_to_none=True)
        del out
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return statistics.median(times), peak, loss


def main(argv=None) -> int:
    import torch

    from vida_eval.train.answer_logits import IGNORE_INDEX, answer_logits_only

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="7b", choices=("7b", "tiny"))
    p.add_argument("--steps", type=int, default=3, help="timed steps per case, after one warm-up step")
    args = p.parse_args(argv)
    device = "cuda" if args.shape == "7b" else "cpu"
    model, config, dtype = build(args.shape, device)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{args.shape} shape on {name}, vocabulary {config.text_config.vocab_size}")
    print(f"{'case':<50} {'tokens':>6} {'answer':>6} {'stock s':>8} {'answers s':>9} {'speed-up':>8} "
          f"{'stock GiB':>9} {'answers GiB':>11} {'loss diff':>9}")
    for label, grid, questions, answer in CASES:
        inputs = batch(config, grid, questions, answer, device, dtype)
        tokens = inputs["input_ids"].shape[1]
        supervised = int((inputs["labels"] != IGNORE_INDEX).sum())
        t_stock, m_stock, l_stock = step(model, inputs, device, args.steps)
        with answer_logits_only():
            t_fast, m_fast, l_fast = step(model, inputs, device, args.steps)
        print(f"{label:<50} {tokens:>6} {supervised:>6} {t_stock:>8.3f} {t_fast:>9.3f} {t_stock / t_fast:>7.2f}x "
              f"{m_stock:>9.1f} {m_fast:>11.1f} {abs(l_stock - l_fast):>9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
