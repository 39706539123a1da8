"""The floor of a set of Qwen2-VL requests on a card: the time no engine can beat.

From the model's shape and each request's tokens:

- vision tower, per image (counted once per image and pixel setting: an engine
  that encodes an image once for all its requests pays it once), with P patches
  (4 per image token), d = embed_dim, r = mlp_ratio, D = depth, H = LM hidden:
    patch embedding  2 P (3 * 2 * 14 * 14) d
    per block        2 P d^2 (4 + 2 r)          qkv, proj, fc1, fc2
                     4 P^2 d                    attention over all patches of the image
    merger           2 (P / 4) ((4 d)^2 + 4 d H)
- language-model prefill, per request of L tokens (h = hidden, i = intermediate,
  k = kv heads x head dim, n = layers):
    per layer        2 L (2 h^2 + 2 h k + 3 h i) + 2 L^2 h    (causal attention: half of 4 L^2 h)
    logits           2 h V                       the last position only
  With shared prefixes (an engine's prefix cache), a request whose first S
  tokens (system prompt and image) an earlier request already computed pays
  only the last L - S: 2 (L - S) (2 h^2 + 2 h k + 3 h i) + 2 (L^2 - S^2) h per layer.
- decoding: every step reads the weights once for the whole batch and each live
  sequence's KV cache (n x 2 x k x 2 bytes per token); a step costs
  max(bytes / bandwidth, 2 x params x live sequences / rate).

FLOPs go over the card's dense bf16 rate and bytes over its memory bandwidth,
both measured (``measure_card``): a large matmul, a large copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PATCH_VOLUME = 3 * 2 * 14 * 14  # channels x temporal patch x patch x patch
MERGE = 4  # 2 x 2 patches per image token
BYTES = 2  # bf16


@dataclass(frozen=True)
class Shape:
    vision_depth: int
    vision_dim: int
    vision_mlp_ratio: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @classmethod
    def from_config(cls, config: dict) -> Shape:
        v, t = config["vision_config"], config.get("text_config", config)
        return cls(v["depth"], v["embed_dim"], v["mlp_ratio"], t["hidden_size"], t["intermediate_size"],
                   t["num_hidden_layers"], t["num_attention_heads"], t["num_key_value_heads"], t["vocab_size"])

    @classmethod
    def from_model(cls, folder: str | Path) -> Shape:
        return cls.from_config(json.loads((Path(folder) / "config.json").read_text()))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hidden // self.heads

    @property
    def lm_params(self) -> int:
        """Language-model weights read at every decoding step: the layers and the output projection."""
        h, k, i = self.hidden, self.kv_dim, self.intermediate
        return self.layers * (2 * h * h + 2 * h * k + 3 * h * i) + h * self.vocab


def vision_flops(shape: Shape, image_tokens: int) -> dict[str, float]:
    """FLOPs of the vision tower on one image of *image_tokens* merged tokens: linear layers and attention."""
    p, d, r = MERGE * image_tokens, shape.vision_dim, shape.vision_mlp_ratio
    linear = 2 * p * PATCH_VOLUME * d + shape.vision_depth * 2 * p * d * d * (4 + 2 * r)
    linear += 2 * image_tokens * ((MERGE * d) ** 2 + MERGE * d * shape.hidden)
    return {"linear": float(linear), "attention": float(shape.vision_depth * 4 * p * p * d)}


def prefill_flops(shape: Shape, tokens: int, causal: bool = True, cached: int = 0) -> dict[str, float]:
    """FLOPs of the language model's prefill of *tokens* (logits of the last position only), the first *cached*
    of them already computed (causal only)."""
    h, k, i, n = shape.hidden, shape.kv_dim, shape.intermediate, shape.layers
    linear = n * 2 * (tokens - cached) * (2 * h * h + 2 * h * k + 3 * h * i) + 2 * h * shape.vocab
    attention = n * 4 * (tokens * tokens - cached * cached) * h * (0.5 if causal else 1.0)
    return {"linear": float(linear), "attention": float(attention)}


def decode_seconds(shape: Shape, prompts: list[int], outputs: list[int], rate: float, bandwidth: float) -> float:
    """Roofline time of generating *outputs[j]* tokens after *prompts[j]*, every sequence in one batch."""
    kv_per_token = shape.layers * 2 * shape.kv_dim * BYTES
    weights = shape.lm_params * BYTES
    total = 0.0
    for step in range(max(outputs, default=0)):
        live = [p + step for p, o in zip(prompts, outputs) if o > step]
        moved = weights + kv_per_token * sum(live)
        total += max(moved / bandwidth, 2 * shape.lm_params * len(live) / rate)
    return total


@dataclass
class RequestTokens:
    image: str  # the image and its pixel setting: requests sharing it share one encoding
    image_tokens: int
    prompt_tokens: int  # text and image tokens
    output_tokens: int
    prefix: str = ""  # what the first prefix_tokens are (system prompt, image, setting): equal keys, equal tokens
    prefix_tokens: int = 0


def floor_seconds(shape: Shape, requests: list[RequestTokens], rate: float, bandwidth: float,
                  encode_once: bool = True, share_prefixes: bool = False, block: int = 16) -> dict[str, float]:
    """The floor of *requests* (vision once per image and setting with *encode_once*; with *share_prefixes*, each
    distinct prefix prefilled once, in whole cache blocks of *block* tokens), by part and in total."""
    images = {r.image: r.image_tokens for r in requests} if encode_once else None
    encodes = list(images.values()) if images is not None else [r.image_tokens for r in requests]
    vision = sum(sum(vision_flops(shape, t).values()) for t in encodes)
    seen: set[str] = set()
    prefill = 0.0
    for r in requests:
        cached = r.prefix_tokens // block * block if share_prefixes and r.prefix and r.prefix in seen else 0
        seen.add(r.prefix)
        prefill += sum(prefill_flops(shape, r.prompt_tokens, cached=cached).values())
    decode = decode_seconds(shape, [r.prompt_tokens for r in requests], [r.output_tokens for r in requests],
                            rate, bandwidth)
    out = {"vision_s": vision / rate, "prefill_s": prefill / rate, "decode_s": decode}
    out["total_s"] = sum(out.values())
    return out


def measure_card(device: str = "cuda", size: int = 8192, copy_bytes: int = 4 << 30, repeat: int = 10,
                 dtype: str = "bfloat16") -> dict:
    """Dense matmul rate (FLOP/s, bf16 on a GPU) and memory bandwidth (bytes/s: read plus write of a copy),
    measured."""
    import time

    import torch

    kind = getattr(torch, dtype)

    def timed(fn) -> float:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeat

    def matmul_rate() -> float:
        a = torch.randn(size, size, dtype=kind, device=device)
        b = torch.randn(size, size, dtype=kind, device=device)
        return 2 * size ** 3 / timed(lambda: a @ b)

    def copy_bandwidth() -> float:
        src = torch.empty(copy_bytes // 2, dtype=torch.bfloat16, device=device)
        dst = torch.empty_like(src)
        return 2 * copy_bytes / timed(lambda: dst.copy_(src))

    rate = matmul_rate()
    bandwidth = copy_bandwidth()
    return {"flops_per_s": rate, "dtype": dtype, "bytes_per_s": bandwidth, "matmul": size, "copy_bytes": copy_bytes}
