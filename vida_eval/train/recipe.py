"""A LLaMA-Factory training recipe as the data side sees it: its limits, and what a sample of it costs.

A recipe's ``cutoff_len`` must hold its largest image plus the longest ViDA
text: LLaMA-Factory truncates the prompt to ``cutoff_len``, which cuts the run
of ``<|image_pad|>`` tokens, and Qwen2-VL's forward then fails to place the
image ("shape mismatch"). The rule, checked for every shipped recipe:

    cutoff_len >= max over ViDA-Bench sizes of the image's tokens at the recipe's limits + LONGEST_VIDA_TEXT_TOKENS
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..images import pixel_values_bytes, training_frame, training_image_tokens
from ..models.families import DEFAULT as DEFAULT_FAMILY
from ..models.families import Family, family_of_model, processor_limits
from ..records import InputError

# The longest ViDA sample's text, in tokens of the qwen2_vl template: the description system prompt (364 tokens),
# the user turn, the longest description the organisers' baseline model wrote on ViDA-Bench (805 tokens), the
# template's role markers and the image's vision start / end tokens; everything but the image pads.
LONGEST_VIDA_TEXT_TOKENS = 1199
# LLaMA-Factory's defaults when a recipe leaves them out.
DEFAULT_IMAGE_MAX_PIXELS = 768 * 768
DEFAULT_IMAGE_MIN_PIXELS = 32 * 32
DEFAULT_CUTOFF_LEN = 2048
PREFETCH_FACTOR = 2  # torch DataLoader's default batches in flight per worker


@dataclass
class Recipe:
    """The keys of a LLaMA-Factory training YAML that decide a sample's length and the data pipeline's memory."""

    path: Path
    args: dict
    _limits: dict = field(default_factory=dict, repr=False, compare=False)  # processor limits by base folder
    _families: dict = field(default_factory=dict, repr=False, compare=False)  # the model's family by base folder

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cutoff_len(self) -> int:
        return int(self.args.get("cutoff_len", DEFAULT_CUTOFF_LEN))

    @property
    def image_min_pixels(self) -> int:
        return int(self.args.get("image_min_pixels", DEFAULT_IMAGE_MIN_PIXELS))

    @property
    def image_max_pixels(self) -> int:
        return int(self.args.get("image_max_pixels", DEFAULT_IMAGE_MAX_PIXELS))

    @property
    def template(self) -> str:
        return str(self.args.get("template", "qwen2_vl"))

    @property
    def model(self) -> str:
        return str(self.args.get("model_name_or_path", ""))

    @property
    def batch_size(self) -> int:
        return int(self.args.get("per_device_train_batch_size", 8))

    @property
    def images_per_batch(self) -> int:
        """Images whose pixels one batch carries: one per sample, or with shared rows one per row (a batch of
        consecutive samples spans at most two images, each in at most four rows, one per system prompt)."""
        if self.args.get("share_image_prefix"):
            return min(self.batch_size, 8)
        return self.batch_size

    @property
    def dataloader_workers(self) -> int:
        return int(self.args.get("dataloader_num_workers", 0))

    def model_folder(self, base: Path | None = None) -> Path | None:
        """The model as a local folder (relative paths from *base*, default the working directory), or None."""
        p = Path(self.model)
        if not p.is_absolute() and base is not None:
            p = base / p
        return p if (p / "config.json").is_file() else None

    def family(self, base: Path | None = None) -> Family:
        """The model's family: its folder's config.json, else its hub name, else Qwen2-VL. Read once: every image
        size and every record converted to the family's boxes asks for it."""
        if base not in self._families:
            self._families[base] = family_of_model(self.model_folder(base) or self.model) or DEFAULT_FAMILY
        return self._families[base]

    def processor_limits(self, base: Path | None = None) -> tuple[int, int]:
        """(min_pixels, max_pixels) of the model's image processor: its preprocessor_config.json when the model is
        a local folder, else its family's (the hub models' own values). Read once: every image size asks for it."""
        if base not in self._limits:
            self._limits[base] = processor_limits(self.model_folder(base), self.family(base))
        return self._limits[base]

    def frame(self, width: int, height: int, base: Path | None = None) -> tuple[int, int]:
        """(width, height) the model sees of a width x height image in training."""
        lo, hi = self.processor_limits(base)
        return training_frame(width, height, self.image_min_pixels, self.image_max_pixels, lo, hi,
                              self.family(base).factor)

    def image_tokens(self, width: int, height: int, base: Path | None = None) -> int:
        lo, hi = self.processor_limits(base)
        return training_image_tokens(width, height, self.image_min_pixels, self.image_max_pixels, lo, hi,
                                     self.family(base).factor)

    def largest_image(self, sizes, base: Path | None = None) -> tuple[tuple[int, int], int]:
        """((width, height), tokens) of the size in *sizes* that costs the most tokens at this recipe's limits."""
        return max(((s, self.image_tokens(*s, base)) for s in sizes), key=lambda t: t[1])

    def shared_memory_need(self, image_tokens: int) -> int:
        """Bytes of /dev/shm the data loader of one rank can hold: workers x batches in flight x a batch's float32
        pixels (LLaMA-Factory's collator returns them, and worker processes hand tensors over in shared memory)."""
        return self.dataloader_workers * PREFETCH_FACTOR * self.images_per_batch * pixel_values_bytes(image_tokens)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """A recipe YAML with ``key=value`` *overrides* (as ``llamafactory-cli train CONFIG key=value`` takes them), or
    InputError naming the file."""
    import yaml

    path = Path(path)
    try:
        args = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if not isinstance(args, dict):
        raise InputError(f"{path}: a recipe is a YAML mapping of LLaMA-Factory keys")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r}: expected key=value")
        try:
            args[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"override {item!r}: its value is not valid YAML") from None
    for key in ("cutoff_len", "image_min_pixels", "image_max_pixels", "per_device_train_batch_size"):
        if key in args and not (isinstance(args[key], int) and args[key] > 0):
            raise InputError(f"{path}: {key} must be a positive integer, found {args[key]!r}")
    return Recipe(path, args)
