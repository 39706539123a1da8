"""The image sizes of the real ViDA-Bench (476 images), and drawing sizes from them.

A fact about the data, carried as a table of (width, height) -> images: the
bench's phone photos, screenshots and web images run from 193 to 5,488 px. At
the official limits they are 1,132 tokens per perception request on average
(up to 4,080) and 2,164 per request of the other tasks (up to 16,320); at the
challenge recipe's training limits (256..8,192 tokens) 1,558 on average, 1,196
at the median and up to 8,228. Benchmarks and synthetic releases draw from it
so that their images cost what real ones do.
"""

from __future__ import annotations

import numpy as np

# (width, height) -> number of ViDA-Bench images of that stored size.
VIDA_BENCH_SIZES: dict[tuple[int, int], int] = {
    (720, 1280): 121, (1280, 720): 72, (512, 384): 62, (500, 375): 13, (640, 480): 13, (1920, 1080): 8,
    (3120, 4160): 8, (500, 333): 7, (640, 360): 6, (3024, 4032): 5, (375, 500): 4, (404, 720): 4, (500, 334): 4,
    (640, 428): 4, (640, 640): 4, (1920, 2560): 4, (2448, 3264): 4, (3456, 4608): 4, (2560, 1920): 3, (4160, 3120): 3,
    (576, 1024): 2, (640, 427): 2, (800, 543): 2, (1200, 800): 2, (1984, 3968): 2, (2988, 5312): 2, (3104, 4128): 2,
    (3264, 2448): 2, (4032, 3024): 2, (193, 480): 1, (221, 228): 1, (333, 500): 1, (334, 500): 1, (342, 500): 1,
    (347, 500): 1, (360, 480): 1, (373, 500): 1, (377, 500): 1, (406, 720): 1, (411, 640): 1, (415, 500): 1,
    (419, 500): 1, (426, 640): 1, (427, 640): 1, (430, 618): 1, (431, 640): 1, (436, 640): 1, (445, 640): 1,
    (450, 300): 1, (451, 640): 1, (457, 600): 1, (466, 500): 1, (479, 456): 1, (479, 640): 1, (480, 319): 1,
    (480, 360): 1, (500, 300): 1, (500, 332): 1, (500, 335): 1, (500, 341): 1, (500, 366): 1, (500, 370): 1,
    (500, 376): 1, (500, 379): 1, (500, 386): 1, (500, 400): 1, (500, 447): 1, (500, 474): 1, (500, 500): 1,
    (512, 640): 1, (544, 960): 1, (576, 1026): 1, (583, 640): 1, (594, 640): 1, (598, 480): 1, (600, 399): 1,
    (600, 450): 1, (600, 544): 1, (607, 640): 1, (620, 420): 1, (622, 321): 1, (628, 480): 1, (632, 468): 1,
    (639, 332): 1, (639, 525): 1, (640, 171): 1, (640, 342): 1, (640, 372): 1, (640, 384): 1, (640, 394): 1,
    (640, 395): 1, (640, 397): 1, (640, 415): 1, (640, 424): 1, (640, 432): 1, (640, 433): 1, (640, 443): 1,
    (640, 457): 1, (640, 461): 1, (640, 466): 1, (640, 477): 1, (640, 485): 1, (640, 509): 1, (640, 512): 1,
    (640, 563): 1, (700, 467): 1, (710, 647): 1, (719, 539): 1, (720, 405): 1, (720, 476): 1, (720, 478): 1,
    (720, 480): 1, (720, 587): 1, (720, 1088): 1, (720, 1540): 1, (799, 533): 1, (800, 534): 1, (800, 550): 1,
    (800, 600): 1, (960, 720): 1, (1152, 720): 1, (1272, 720): 1, (1280, 960): 1, (2304, 4096): 1, (2592, 4608): 1,
    (3000, 4000): 1, (3016, 4032): 1, (3840, 2160): 1, (3968, 1984): 1, (3968, 2976): 1, (4112, 5488): 1,
    (4608, 3456): 1, (5312, 2988): 1, (5488, 4112): 1,
}
# Today's small synthetic sizes (at most 640 px): quick tests and CPU demos.
SMALL_SIZES = ((512, 384), (384, 512), (448, 448), (640, 360), (360, 640), (576, 432), (320, 480))
SIZE_CHOICES = ("small", "vida-bench")


def parse_sizes(spec: str) -> list[tuple[int, int]] | dict[tuple[int, int], int]:
    """'small', 'vida-bench' or explicit sizes 'WxH[,WxH...]' (drawn uniformly)."""
    if spec == "small":
        return list(SMALL_SIZES)
    if spec == "vida-bench":
        return dict(VIDA_BENCH_SIZES)
    sizes = []
    for part in spec.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"size {part!r}: expected WIDTHxHEIGHT, 'small' or 'vida-bench'") from None
        if not (16 <= w <= 20000 and 16 <= h <= 20000):
            raise ValueError(f"size {part!r}: each side must be 16..20000 px")
        sizes.append((w, h))
    return sizes


def draw_size(rng: np.random.Generator, sizes) -> tuple[int, int]:
    """One (width, height): weighted by the counts when *sizes* is a table, uniform when it is a list."""
    if isinstance(sizes, dict):
        keys = list(sizes)
        weights = np.array([sizes[k] for k in keys], dtype=float)
        return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]
    return tuple(sizes[int(rng.integers(len(sizes)))])


def sizes_in_order(sizes: dict[tuple[int, int], int]) -> list[tuple[int, int]]:
    """Every size as often as its count (the table's own distribution, exactly), largest count first."""
    return [size for size, n in sizes.items() for _ in range(n)]
