"""The exact number of tokens LLaMA-Factory makes of a prepared record, without decoding its images.

LLaMA-Factory runs the full image processor on every sample only to learn how
many ``<|image_pad|>`` tokens replace its ``<image>`` (0.68 s for a 3120x4160
photo). The count follows from the image's stored size alone (read from the
file header) through the recipe's resize and the processor's
(``Recipe.image_tokens``); the text goes through the recipe's own LLaMA-Factory
template and the model's tokenizer. Each image becomes one pad token while the
text is encoded (pads are special tokens, so the count is additive) and the
rest of its pads are added.
"""

from __future__ import annotations

from pathlib import Path

from .recipe import Recipe

IMAGE_PLACEHOLDER = "<image>"


def recipe_tokenizer(recipe: Recipe, base: Path | None = None):
    """(tokenizer, where it came from): the model folder's, or its family's own vocabulary when the model is a hub
    name (the three families share the Qwen2 byte-level BPE; their added tokens are the family's)."""
    folder = recipe.model_folder(base)
    if folder is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder), str(folder)
    from ..models.tiny import build_tokenizer

    family = recipe.family(base)
    return build_tokenizer(family), f"the {family.title} tokenizer (the recipe's model is not a local folder)"


class LengthCounter:
    """``count(record, sizes)`` -> (tokens, image tokens) of a prepared record as LLaMA-Factory encodes it."""

    def __init__(self, recipe: Recipe, base: Path | None = None):
        try:
            from llamafactory.data import get_template_and_fix_tokenizer
            from llamafactory.hparams import DataArguments
        except ModuleNotFoundError as e:  # pragma: no cover - an install without the train extra
            raise RuntimeError("counting a recipe's tokens needs LLaMA-Factory: pip install -e '.[train]'") from e
        self.recipe, self.base = recipe, base
        self.tokenizer, self.tokenizer_source = recipe_tokenizer(recipe, base)
        self.template = get_template_and_fix_tokenizer(self.tokenizer, DataArguments(template=recipe.template))
        plugin = self.template.mm_plugin
        self.one_image = f"{plugin.vision_bos_token}{plugin.image_token}{plugin.vision_eos_token}"
        self._image_tokens: dict[tuple[int, int], int] = {}

    def image_tokens(self, width: int, height: int) -> int:
        key = (width, height)
        if key not in self._image_tokens:
            self._image_tokens[key] = self.recipe.image_tokens(width, height, self.base)
        return self._image_tokens[key]

    def count(self, record: dict, sizes: list[tuple[int, int]]) -> tuple[int, int]:
        """Tokens of *record* (``conversations`` of from/value turns, ``system``) whose images have *sizes*."""
        roles = {"human": "user", "gpt": "assistant"}
        messages = [{"role": roles[t["from"]], "content": t["value"].replace(IMAGE_PLACEHOLDER, self.one_image)}
                    for t in record["conversations"]]
        pairs = self.template.encode_multiturn(self.tokenizer, messages, record.get("system"), None)
        text = sum(len(s) + len(t) for s, t in pairs) + (1 if self.template.efficient_eos else 0)
        image = sum(self.image_tokens(w, h) for w, h in sizes)
        return text + image - len(sizes), image
