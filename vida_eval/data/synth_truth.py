"""The ground truth of a synthetic ViDA image: its distortions, their boxes and significance, its MOS and level.

Ground-truth rules (deterministic for a seed):

- area(d) is the fraction of the image covered by distortion d's box; the
  union of all boxes (shapely) gives the distorted fraction U.
- significance_score(d) = round(area(d) * level(d), 4) with level Slight 1,
  Moderate 2, Severe 3; the key distortions are those of maximal score.
- MOS = clip(4.8 - sum_d 0.45 * level(d) * (0.4 + 0.6 * area(d)) - 0.3 * U, 1, 5),
  rounded to 3 decimals; quality level by MOS: < 1.8 bad, < 2.6 poor,
  < 3.4 fair, < 4.2 good, else excellent.
- A distortion is global when its box covers at least 90% of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..vocab import DISTORTION_TYPES, QUALITY_LEVELS, SEVERITIES
from .distortions import SEVERITY_LEVEL

GLOBAL_FRACTION = 0.9


@dataclass(frozen=True)
class DistortionMix:
    """Which distortion types a release draws, how many distinct ones an image has at most, and how often its
    first type appears in a second box (the default: all ten, 0-3, one image in five)."""

    types: tuple[str, ...] = tuple(DISTORTION_TYPES)
    most: int = 3
    repeat: float = 0.2
    global_share: float = 0.2  # of the distinct types' boxes, the share that covers the whole image

    def __post_init__(self):
        unknown = [t for t in self.types if t not in DISTORTION_TYPES]
        if unknown or not self.types:
            raise ValueError(f"unknown distortion types {unknown}; choose from: {', '.join(DISTORTION_TYPES)}"
                             if unknown else "no distortion type given")
        if not 0 <= self.most <= 3:
            raise ValueError(f"at most {self.most} distortions per image: choose 0..3")
        for name in ("repeat", "global_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)}: choose a share in 0..1")


ALL_TYPES = DistortionMix()


def random_box(rng: np.random.Generator, low: int = 180, high: int = 620) -> list[int]:
    """A 0..1000 box inside the image, width and height drawn in [low, high): by default a local distortion's box."""
    w, h = int(rng.integers(low, high)), int(rng.integers(low, high))
    x, y = int(rng.integers(0, 1000 - w)), int(rng.integers(0, 1000 - h))
    return [x, y, x + w, y + h]


def random_distortions(rng: np.random.Generator, mix: DistortionMix = ALL_TYPES) -> list[dict]:
    """0-3 distinct distortions (at most mix.most, of mix.types) with severities and 0..1000 boxes; the first
    type repeats in a second box with probability mix.repeat."""
    n = min(int(rng.choice([0, 1, 1, 2, 2, 3])), mix.most, len(mix.types))
    types = [mix.types[t] for t in rng.choice(len(mix.types), n, replace=False)]
    if n and rng.random() < mix.repeat:
        types.append(types[0])
    out = []
    for k, t in enumerate(types):
        # A repeated type always gets a local box, so no two boxes of a type coincide.
        if rng.random() < mix.global_share and k < n:
            coords = [0, 0, 999, 999]
        else:
            coords = random_box(rng)
        out.append({"distortion": t, "severity": SEVERITIES[int(rng.integers(0, 3))],
                    "coordinates": coords})
    return out


def quality_of(distortions: list[dict]) -> tuple[float, str]:
    """MOS and level from the distortions (see the module docstring)."""
    from shapely.geometry import box as shapely_box
    from shapely.ops import unary_union

    penalty = 0.0
    for d in distortions:
        penalty += 0.45 * SEVERITY_LEVEL[d["severity"]] * (0.4 + 0.6 * d["area"])
    union = unary_union([shapely_box(*d["coordinates"]) for d in distortions]).area / 1e6 if distortions else 0.0
    mos = round(min(5.0, max(1.0, 4.8 - penalty - 0.3 * union)), 3)
    level = QUALITY_LEVELS[sum(mos >= t for t in (1.8, 2.6, 3.4, 4.2))]
    return mos, level


def annotate(distortions: list[dict]) -> list[dict]:
    """Add area (shapely) and significance_score to each distortion."""
    from shapely.geometry import box as shapely_box

    for d in distortions:
        d["area"] = shapely_box(*d["coordinates"]).area / 1e6
        d["significance_score"] = round(d["area"] * SEVERITY_LEVEL[d["severity"]], 4)
    return distortions


def key_distortions(distortions: list[dict]) -> list[dict]:
    if not distortions:
        return []
    top = max(d["significance_score"] for d in distortions)
    return [d for d in distortions if d["significance_score"] == top]


def public(d: dict) -> dict:
    return {k: d[k] for k in ("distortion", "severity", "coordinates", "significance_score")}

