"""Photographic scenes for the synthetic release, from public-domain and CC0 photos that installed packages ship.

Real ViDA images are user photos: texture everywhere, so a blur, ringing or
aliasing changes most pixels of its box. Flat synthetic gradients do not show
those distortions. A scene here is one photo, or for a large image a grid of
photos (so that no source is enlarged much more than 2.5 times), each a random crop
at a random scale, mirrored at random, with its brightness, contrast and
saturation shifted; grey photos are tinted.

The photos (file, what it shows, licence as its package documents it):

- scikit-image (``skimage/data``): astronaut (NASA, public domain), chelsea
  (CC0), coffee (CC0), rocket (SpaceX, public domain), hubble_deep_field
  (NASA, public domain), camera (CC0), brick, grass, gravel (CC0 textures),
  coins (Brooklyn Museum, no known copyright restrictions);
- matplotlib (``mpl-data/sample_data``): grace_hopper (US Navy, public domain).

The files are read from the installed packages without importing them.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..records import InputError


@dataclass(frozen=True)
class Photo:
    package: str
    path: str  # inside the package folder
    shows: str  # the content, as a description names it


PHOTOS = (
    Photo("skimage", "data/astronaut.png", "an astronaut in an orange suit in front of a flag"),
    Photo("skimage", "data/chelsea.png", "a tabby cat"),
    Photo("skimage", "data/coffee.png", "a cup of coffee on a saucer"),
    Photo("skimage", "data/rocket.jpg", "a rocket lifting off from its launch pad"),
    Photo("skimage", "data/hubble_deep_field.jpg", "a field of distant galaxies"),
    Photo("skimage", "data/camera.png", "a photographer with a camera on a tripod"),
    Photo("skimage", "data/brick.png", "a brick wall"),
    Photo("skimage", "data/grass.png", "a patch of grass"),
    Photo("skimage", "data/gravel.png", "a bed of gravel"),
    Photo("skimage", "data/coins.png", "a row of old coins"),
    Photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "a woman in a naval uniform"),
)
# A source is enlarged at most about this much; larger images get a grid of photos.
MAX_ENLARGEMENT = 2.5


class PhotosMissing(InputError):
    """No scene photo is installed."""


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def photo_paths() -> list[tuple[Photo, Path]]:
    """Each photo with its file; PhotosMissing when none can be found."""
    out = []
    for p in PHOTOS:
        folder = _package_folder(p.package)
        if folder is not None and (folder / p.path).is_file():
            out.append((p, folder / p.path))
    if not out:
        raise PhotosMissing("the scene photos ship with scikit-image and matplotlib: pip install scikit-image "
                            "matplotlib (or synthesize with --scenes shapes)")
    return out


@lru_cache(maxsize=1)
def load_photos() -> tuple[tuple[Photo, np.ndarray, bool], ...]:
    """Every photo found: (photo, RGB uint8 array, whether it is grey)."""
    out = []
    for photo, path in photo_paths():
        with Image.open(path) as im:
            grey = im.mode in ("L", "LA", "I", "I;16", "1")
            out.append((photo, np.asarray(im.convert("RGB")).copy(), grey))
    return tuple(out)


def _grid(width: int, height: int, source_side: int) -> tuple[int, int]:
    """Columns and rows so that each cell is at most MAX_ENLARGEMENT times a typical source's longer side."""
    cell = MAX_ENLARGEMENT * source_side
    return max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell))


def _shift_colours(rng: np.random.Generator, tile: np.ndarray, grey: bool) -> np.ndarray:
    x = tile.astype(np.float32)
    if grey:
        tint = rng.uniform(0.55, 1.0, 3).astype(np.float32)
        x = x * (tint / tint.max())
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.85, 1.15)  # contrast, brightness
    luma = x.mean(axis=2, keepdims=True)
    x = luma + (x - luma) * rng.uniform(0.7, 1.3)  # saturation
    return np.clip(x, 0, 255).astype(np.uint8)


def _tile(rng: np.random.Generator, photo: np.ndarray, width: int, height: int, grey: bool) -> np.ndarray:
    """A random crop of *photo* with the aspect of width x height, resized to it, maybe mirrored, colours shifted."""
    ph, pw = photo.shape[:2]
    aspect = width / height
    full_w, full_h = (pw, pw / aspect) if pw / ph < aspect else (ph * aspect, ph)
    scale = rng.uniform(0.55, 1.0)
    cw, ch = max(8, int(full_w * scale)), max(8, int(full_h * scale))
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw]).resize((width, height), Image.Resampling.BICUBIC)
    tile = np.asarray(crop)
    if rng.random() < 0.5:
        tile = tile[:, ::-1]
    return _shift_colours(rng, tile, grey)


def photo_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[str, tuple]]]:
    """(RGB image of width x height, [(what a cell shows, its 0..1000 box)]) for one scene."""
    photos = load_photos()
    cols, rows = _grid(width, height, int(np.median([max(p.shape[:2]) for _, p, _ in photos])))
    image = np.empty((height, width, 3), np.uint8)
    objects = []
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    for j in range(rows):
        for i in range(cols):
            photo, pixels, grey = photos[int(rng.integers(len(photos)))]
            w, h = xs[i + 1] - xs[i], ys[j + 1] - ys[j]
            image[ys[j]:ys[j + 1], xs[i]:xs[i + 1]] = _tile(rng, pixels, w, h, grey)
            objects.append((photo.shows, (round(1000 * xs[i] / width), round(1000 * ys[j] / height),
                                          round(1000 * xs[i + 1] / width), round(1000 * ys[j + 1] / height))))
    return image, objects
