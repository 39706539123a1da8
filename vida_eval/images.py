"""Images as every path hands them to the model: one pixel frame, and the number of tokens they become.

The frame is the stored one. LLaMA-Factory training, transformers' processors
and the official evaluation scripts read the stored pixels and never apply an
EXIF orientation tag; vLLM's image parser does apply it. So every backend
receives images whose EXIF (and XMP) orientation is dropped, and a phone photo
tagged "rotate 90" reaches the model exactly as it was trained on it.
``vida-eval data prepare`` reports tagged images and images whose stored size
disagrees with the metadata, the sign of a release annotated in another frame.

Token counts follow Qwen2-VL's processor: sides rounded to multiples of
patch x merge (28 px; 32 px for Qwen3-VL) within [min_pixels, max_pixels]
(transformers' ``smart_resize``), one token per 28 x 28 px. LLaMA-Factory first shrinks (or
grows) an image to its ``image_max_pixels`` / ``image_min_pixels``, truncating
each side to an integer, and the processor resizes the result.
"""

from __future__ import annotations

import math
from pathlib import Path

# Qwen2-VL-*-Instruct's preprocessor_config.json: the limits a request gets when it sets none.
QWEN2_VL_MIN_PIXELS = 4 * 28 * 28
QWEN2_VL_MAX_PIXELS = 16384 * 28 * 28
# The challenge recipe's training limits (configs/qwen2vl_lora.yaml): 256..8,192 tokens.
RECIPE_MIN_PIXELS = 256 * 28 * 28
RECIPE_MAX_PIXELS = 8192 * 28 * 28
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright, 2-8 mirrored and/or rotated
_ORIENTATION_KEYS = ("exif", "xmp", "XML:com.adobe.xmp")  # where PIL (and so vLLM) finds an orientation


class ImageError(Exception):
    pass


def load_image(path: Path):
    """The image as RGB in its stored frame (orientation metadata dropped), or ImageError with the reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ImageError(f"image unreadable: {path} ({type(e).__name__})") from None
    for key in _ORIENTATION_KEYS:
        rgb.info.pop(key, None)
    return rgb


def header(path: Path) -> tuple[int, int, int | None]:
    """(stored width, stored height, EXIF orientation or None), read from the file header without decoding."""
    from PIL import Image

    with Image.open(path) as im:
        orientation = im.getexif().get(ORIENTATION_TAG)
        return im.width, im.height, orientation


def rotated(orientation: int | None) -> bool:
    """True when the EXIF orientation swaps width and height on display (5..8)."""
    return orientation in (5, 6, 7, 8)


def smart_resize(width: int, height: int, min_pixels: int, max_pixels: int,
                 factor: int = PATCH_SIZE * MERGE_SIZE) -> tuple[int, int]:
    """(width, height) after the Qwen2-VL processor's resize (Qwen2.5-VL's and Qwen3-VL's too, with their
    factor): transformers' own ``smart_resize``."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as resize

    h, w = resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def llamafactory_resize(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """The size LLaMA-Factory's Qwen2-VL plugin hands the processor (its ``_preprocess_image`` rules)."""
    if width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if width * height < min_pixels:
        f = math.sqrt(min_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if min(width, height) < 28:
        width, height = max(width, 28), max(height, 28)
    if width / height > 200:
        width = height * 180
    if height / width > 200:
        height = width * 180
    return width, height


def image_tokens(width: int, height: int, min_pixels: int = QWEN2_VL_MIN_PIXELS,
                 max_pixels: int = QWEN2_VL_MAX_PIXELS, factor: int = PATCH_SIZE * MERGE_SIZE) -> int:
    """Tokens of an image given to the processor as it is (evaluation): one per factor x factor px after
    smart_resize (28 for Qwen2-VL and Qwen2.5-VL, 32 for Qwen3-VL)."""
    w, h = smart_resize(width, height, min_pixels, max_pixels, factor)
    return (w // factor) * (h // factor)


def training_frame(width: int, height: int, image_min_pixels: int, image_max_pixels: int,
                   processor_min_pixels: int = QWEN2_VL_MIN_PIXELS, processor_max_pixels: int = QWEN2_VL_MAX_PIXELS,
                   factor: int = PATCH_SIZE * MERGE_SIZE) -> tuple[int, int]:
    """(width, height) the model sees in LLaMA-Factory training: its resize to the recipe's limits, then the
    processor's."""
    w, h = llamafactory_resize(width, height, image_max_pixels, image_min_pixels)
    return smart_resize(w, h, processor_min_pixels, processor_max_pixels, factor)


def training_image_tokens(width: int, height: int, image_min_pixels: int, image_max_pixels: int,
                          processor_min_pixels: int = QWEN2_VL_MIN_PIXELS,
                          processor_max_pixels: int = QWEN2_VL_MAX_PIXELS,
                          factor: int = PATCH_SIZE * MERGE_SIZE) -> int:
    """Tokens of an image in LLaMA-Factory training."""
    w, h = training_frame(width, height, image_min_pixels, image_max_pixels, processor_min_pixels,
                          processor_max_pixels, factor)
    return (w // factor) * (h // factor)


def pixel_values_bytes(tokens: int) -> int:
    """Bytes of the float32 ``pixel_values`` of an image of *tokens* tokens (merge^2 patches of 3 x 2 x 14 x 14)."""
    return tokens * MERGE_SIZE ** 2 * 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE ** 2 * 4
