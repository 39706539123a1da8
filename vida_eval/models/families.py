"""What a model family is, in one place: its LLaMA-Factory template, box convention, resize rule and vocabulary.

ViDA writes a box as ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with integers
normalised to 0..1000, Qwen2-VL's own convention. The families differ in what
the numbers mean to the model:

| family | transformers model_type | template | box numbers | resize factor |
| --- | --- | --- | --- | --- |
| qwen2_vl | qwen2_vl | qwen2_vl | 0..1000 of the image | 28 px (patch 14 x merge 2) |
| qwen2_5_vl | qwen2_5_vl | qwen2_vl | absolute pixels of the image as the processor resized it | 28 px |
| qwen3_vl | qwen3_vl | qwen3_vl_nothink | 0..1000 of the image | 32 px (patch 16 x merge 2) |

The grounded text keeps ViDA's layout (severity references and box tokens,
which all three vocabularies have as special tokens); only the numbers change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import prompts
from ..records import InputError
from .chat_templates import QWEN2_VL_CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE

RELATIVE = "relative"  # integers 0..1000 of the image's width and height
ABSOLUTE = "absolute"  # pixels of the image after the processor's resize


@dataclass(frozen=True)
class Family:
    """One model family as every part of the project needs it."""

    name: str  # the --family value
    title: str
    model_type: str  # config.json's model_type
    architecture: str  # transformers class of the checkpoint
    template: str  # LLaMA-Factory template
    boxes: str  # RELATIVE or ABSOLUTE
    patch_size: int
    merge_size: int
    # The processor's own pixel limits (preprocessor_config.json of the Instruct checkpoints): what a request that
    # sets none gets.
    min_pixels: int
    max_pixels: int
    chat_template: str
    recipe: str  # the shipped LoRA recipe
    hub_model: str
    # Added tokens after the 151,643 byte-level BPE entries, in id order from 151643.
    special_tokens: tuple[str, ...]

    @property
    def factor(self) -> int:
        """Image sides are resized to multiples of this many pixels; one image token per factor x factor."""
        return self.patch_size * self.merge_size

    @property
    def converts_boxes(self) -> bool:
        return self.boxes == ABSOLUTE


_QWEN2_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Qwen2.5 added tool-call and fill-in-the-middle tokens; Qwen3 the thinking and tool-response ones.
_QWEN2_5_SPECIAL = _QWEN2_SPECIAL + (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)
_QWEN3_SPECIAL = _QWEN2_5_SPECIAL + ("<tool_response>", "</tool_response>", "<think>", "</think>")

QWEN2_VL = Family(
    name="qwen2_vl", title="Qwen2-VL", model_type="qwen2_vl", architecture="Qwen2VLForConditionalGeneration",
    template="qwen2_vl", boxes=RELATIVE, patch_size=14, merge_size=2, min_pixels=4 * 28 * 28,
    max_pixels=16384 * 28 * 28, chat_template=QWEN2_VL_CHAT_TEMPLATE, recipe="configs/qwen2vl_lora.yaml",
    hub_model="Qwen/Qwen2-VL-7B-Instruct", special_tokens=_QWEN2_SPECIAL,
)
QWEN2_5_VL = Family(
    name="qwen2_5_vl", title="Qwen2.5-VL", model_type="qwen2_5_vl", architecture="Qwen2_5_VLForConditionalGeneration",
    template="qwen2_vl", boxes=ABSOLUTE, patch_size=14, merge_size=2, min_pixels=4 * 28 * 28,
    max_pixels=16384 * 28 * 28, chat_template=QWEN2_VL_CHAT_TEMPLATE, recipe="configs/qwen2_5vl_lora.yaml",
    hub_model="Qwen/Qwen2.5-VL-7B-Instruct", special_tokens=_QWEN2_5_SPECIAL,
)
QWEN3_VL = Family(
    name="qwen3_vl", title="Qwen3-VL", model_type="qwen3_vl", architecture="Qwen3VLForConditionalGeneration",
    template="qwen3_vl_nothink", boxes=RELATIVE, patch_size=16, merge_size=2, min_pixels=65536,
    max_pixels=16777216, chat_template=QWEN3_VL_CHAT_TEMPLATE, recipe="configs/qwen3vl_lora.yaml",
    hub_model="Qwen/Qwen3-VL-8B-Instruct", special_tokens=_QWEN3_SPECIAL,
)
FAMILIES = {f.name: f for f in (QWEN2_VL, QWEN2_5_VL, QWEN3_VL)}
DEFAULT = QWEN2_VL
# Hub names spell the family with dots and dashes; the most specific spelling first.
_NAME_HINTS = (("qwen3-vl", QWEN3_VL), ("qwen3_vl", QWEN3_VL), ("qwen2.5-vl", QWEN2_5_VL),
               ("qwen2_5_vl", QWEN2_5_VL), ("qwen2_5-vl", QWEN2_5_VL), ("qwen2-vl", QWEN2_VL), ("qwen2_vl", QWEN2_VL))


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(f"family {name!r}: choose from {', '.join(FAMILIES)}") from None


def family_of_model(model: str | Path) -> Family | None:
    """The family of a model folder (its config.json's model_type) or of a hub name; None when neither says."""
    cfg = Path(model) / "config.json"
    if cfg.is_file():
        try:
            model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        for f in FAMILIES.values():
            if f.model_type == model_type:
                return f
        return None
    low = str(model).lower()
    for hint, f in _NAME_HINTS:
        if hint in low:
            return f
    return None


def resolve_family(name: str | None, model: str | Path | None) -> Family:
    """*name* when given (and, for a model folder of a known family, the same one), else the model's family, else
    Qwen2-VL. A folder of one family evaluated or trained as another is an InputError."""
    found = family_of_model(model) if model else None
    if name is None:
        return found or DEFAULT
    chosen = get_family(name)
    if found is not None and found is not chosen:
        raise InputError(f"{model} is a {found.title} model (config.json model_type {found.model_type!r}); "
                         f"--family {chosen.name} would write its boxes in the wrong convention")
    return chosen


def processor_limits(folder: Path | None, family: Family) -> tuple[int, int]:
    """(min_pixels, max_pixels) a request that sets none gets: the model folder's preprocessor_config.json (pixel
    keys, or Qwen3-VL's size edges), else the family's own."""
    cfg_path = Path(folder) / "preprocessor_config.json" if folder is not None else None
    if cfg_path is None or not cfg_path.is_file():
        return family.min_pixels, family.max_pixels
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{cfg_path}: not readable JSON ({e})") from None
    size = cfg.get("size") or {}
    return (int(size.get("shortest_edge", cfg.get("min_pixels", family.min_pixels))),
            int(size.get("longest_edge", cfg.get("max_pixels", family.max_pixels))))


def level_token_ids(tokenizer, family: Family | None = None) -> list[int]:
    """Ids of ' excellent' ... ' bad', the scoring levels; each must be one token of the family's vocabulary
    (the score is the softmax of their next-token logits)."""
    ids = []
    for word in prompts.SCORING_LEVEL_TOKENS:
        toks = tokenizer.encode(word, add_special_tokens=False)
        if len(toks) != 1:
            who = f"the {family.title} tokenizer" if family else "this tokenizer"
            raise InputError(f"scoring level {word!r} is {len(toks)} tokens of {who} ({toks}), not one: "
                             "its probability is not one next-token logit")
        ids.append(toks[0])
    return ids
