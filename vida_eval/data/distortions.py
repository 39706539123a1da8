"""Real image distortions, one per ViDA type, applied inside a pixel box.

Each function takes an RGB uint8 array of the region and a severity level
1 (Slight), 2 (Moderate) or 3 (Severe) and returns the distorted region.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter
from scipy.ndimage import uniform_filter1d

SEVERITY_LEVEL = {"Slight": 1, "Moderate": 2, "Severe": 3}


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a))


def _resample(a: np.ndarray, factor: int, down, up) -> np.ndarray:
    h, w = a.shape[:2]
    small = _pil(a).resize((max(1, w // factor), max(1, h // factor)), down)
    return np.asarray(small.resize((w, h), up))


def low_clarity(a, level, rng):
    """Detail lost by down- then up-sampling (bicubic)."""
    return _resample(a, 1 + 2 * level, Image.BILINEAR, Image.BICUBIC)


def out_of_focus_blur(a, level, rng):
    """Defocus: a Gaussian blur."""
    return np.asarray(_pil(a).filter(ImageFilter.GaussianBlur(radius=1.5 * level + 0.5)))


def motion_blur(a, level, rng):
    """A linear smear along x or y."""
    length = 4 * level + 3
    axis = int(rng.integers(0, 2))
    return uniform_filter1d(a.astype(np.float32), size=length, axis=axis, mode="nearest").round().astype(np.uint8)


def noise(a, level, rng):
    """Additive Gaussian noise."""
    sigma = (8.0, 18.0, 32.0)[level - 1]
    return np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)


def blocking_artifacts(a, level, rng):
    """JPEG compression of the region at a low quality."""
    buf = io.BytesIO()
    _pil(a).save(buf, format="JPEG", quality=(14, 7, 2)[level - 1])
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def overexposure(a, level, rng):
    """Highlights clipped by a gain."""
    gain = (1.5, 2.0, 2.8)[level - 1]
    return np.clip(a.astype(np.float32) * gain + 25 * level, 0, 255).astype(np.uint8)


def underexposure(a, level, rng):
    """Shadows crushed by a gain below 1 and a gamma."""
    x = a.astype(np.float32) / 255.0
    return np.clip(255 * (x ** (1 + 0.6 * level)) * (0.7 - 0.15 * level), 0, 255).astype(np.uint8)


def edge_aliasing_effect(a, level, rng):
    """Jagged edges from nearest-neighbour resampling."""
    return _resample(a, 1 + level, Image.NEAREST, Image.NEAREST)


def edge_ringing_effect(a, level, rng):
    """Halos along edges from a strong high-boost filter."""
    blurred = np.asarray(_pil(a).filter(ImageFilter.GaussianBlur(radius=2.0))).astype(np.float32)
    boost = 1.5 * level
    return np.clip(a + boost * (a.astype(np.float32) - blurred), 0, 255).astype(np.uint8)


def meaningless_solid_color(a, level, rng):
    """A flat patch of one colour over the content."""
    color = rng.integers(0, 256, size=3).astype(np.float32)
    alpha = (0.7, 0.88, 1.0)[level - 1]
    return (a.astype(np.float32) * (1 - alpha) + color * alpha).round().astype(np.uint8)


APPLY = {
    "Low clarity": low_clarity,
    "Out of focus blur": out_of_focus_blur,
    "Motion blur": motion_blur,
    "Noise": noise,
    "Blocking artifacts": blocking_artifacts,
    "Overexposure": overexposure,
    "Underexposure": underexposure,
    "Edge aliasing effect": edge_aliasing_effect,
    "Edge ringing effect": edge_ringing_effect,
    "Meaningless solid color": meaningless_solid_color,
}


def apply_distortion(image: np.ndarray, name: str, severity: str, box_px, rng) -> None:
    """Distort *image* in place inside the pixel box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box_px
    region = image[y1:y2, x1:x2]
    if region.size:
        image[y1:y2, x1:x2] = APPLY[name](region, SEVERITY_LEVEL[severity], rng)
