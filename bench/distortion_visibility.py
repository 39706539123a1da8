"""How visible each synthetic distortion is in its box, on the two kinds of scene, side by side.

For N scenes of each kind (``shapes``: gradients with shapes; ``photos``: crops
of real photographs) every distortion type is applied at Slight and at Severe in
a random box (the release's box rule), and the share of the box's pixels whose
grey level (ITU-R 601 luma, as PIL's "L") changes by more than 4 is recorded.
Printed: the median share over boxes per type and severity, and the share of
boxes where fewer than 2% of the pixels change (a distortion the model cannot
see there).

    python bench/distortion_visibility.py --scenes 400 --sizes small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval.data.distortions import apply_distortion
from vida_eval.data.sizes import SIZE_CHOICES, draw_size, parse_sizes
from vida_eval.data.synth import SCENE_KINDS, make_scene, to_pixels
from vida_eval.data.synth_truth import random_box
from vida_eval.vocab import DISTORTION_TYPES

THRESHOLD = 4  # grey levels
INVISIBLE = 0.02  # share of a box's pixels


def luma(a: np.ndarray) -> np.ndarray:
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def changed_share(kind: str, n: int, sizes, seed: int = 0) -> dict[tuple[str, str], list[float]]:
    """(type, severity) -> the share of changed pixels in each of the *n* scenes' boxes."""
    out: dict[tuple[str, str], list[float]] = {}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        width, height = draw_size(rng, sizes)
        base = make_scene(rng, width, height, kind).image
        for name in DISTORTION_TYPES:
            x1, y1, x2, y2 = to_pixels(random_box(rng), width, height)
            for severity in ("Slight", "Severe"):
                img = base.copy()
                apply_distortion(img, name, severity, (x1, y1, x2, y2), np.random.default_rng([seed, i, 1]))
                diff = np.abs(luma(img[y1:y2, x1:x2].astype(np.float32)) - luma(base[y1:y2, x1:x2].astype(np.float32)))
                out.setdefault((name, severity), []).append(float((diff > THRESHOLD).mean()) if diff.size else 0.0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=200, help="scenes of each kind")
    p.add_argument("--sizes", default="small", help=f"image sizes: {', '.join(SIZE_CHOICES)} or WxH,...")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = parse_sizes(args.sizes)
    shares = {kind: changed_share(kind, args.scenes, sizes, args.seed) for kind in SCENE_KINDS}
    kinds = list(SCENE_KINDS)
    print(f"{args.scenes} scenes of each kind, sizes {args.sizes}; median share of a box's pixels changed by more "
          f"than {THRESHOLD} grey levels (share of boxes under {INVISIBLE:.0%}), Slight / Severe")
    print(f"{'distortion':<26}" + "".join(f"{k:>34}" for k in kinds))
    for name in DISTORTION_TYPES:
        cells = []
        for kind in kinds:
            s, v = (np.array(shares[kind][(name, sev)]) for sev in ("Slight", "Severe"))
            cells.append(f"{np.median(s):.3f} ({(s < INVISIBLE).mean():.2f}) / {np.median(v):.3f} "
                         f"({(v < INVISIBLE).mean():.2f})")
        print(f"{name:<26}" + "".join(f"{c:>34}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
