"""Can a tiny model's vision tower learn to see a distortion? A yes/no probe on the tower alone.

For each distortion type, N synthetic photo scenes, half of them with the distortion (a random severity) in a box
drawn by the release's rule, go through the model's own image processor; the vision tower (as the tiny-model builder
makes it, ``--patch-init`` random or frequency) plus a linear head on the mean and the max of its merged tokens
trains to say whether the distortion is there, and is tested on held-out scenes. Printed per type and patch
initialisation: train and test accuracy side by side. Chance is 0.5; the test accuracy is what a captioning model
built on this tower could learn to say about the distortion in that budget.

    python bench/vision_probe.py --preset small --types Noise,"Motion blur",Overexposure --steps 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval.data.distortions import apply_distortion
from vida_eval.data.sizes import SIZE_CHOICES, draw_size, parse_sizes
from vida_eval.data.synth import make_scene, to_pixels
from vida_eval.data.synth_truth import random_box
from vida_eval.models.tiny import PATCH_INITS, PRESETS, build_tiny_model
from vida_eval.models.warmup import vision_tower
from vida_eval.vocab import DISTORTION_TYPES, SEVERITIES


def scenes(name: str, n: int, sizes, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """*n* photo scenes, every other one with *name* in a random box at a random severity; labels 1 / 0."""
    images, labels = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        width, height = draw_size(rng, sizes)
        image = make_scene(rng, width, height, "photos").image
        if i % 2:
            box = random_box(rng)
            severity = SEVERITIES[int(rng.integers(0, 3))]
            apply_distortion(image, name, severity, to_pixels(box, width, height), rng)
        images.append(image)
        labels.append(i % 2)
    return images, np.array(labels, dtype=np.float32)


def encode(image_processor, images: list[np.ndarray]):
    """Per image, (pixel_values, grid_thw) from the model's own processor."""
    return [(o["pixel_values"], o["image_grid_thw"]) for o in
            (image_processor(images=[im], return_tensors="pt") for im in images)]


class Probe:
    """The vision tower and a linear head on [mean, max] of each image's merged tokens."""

    def __init__(self, model_dir: Path, threads: int):
        import torch
        from transformers import AutoModelForImageTextToText

        torch.set_num_threads(threads)
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        self.tower = vision_tower(model)
        self.head = torch.nn.Linear(2 * model.config.vision_config.hidden_size, 1)  # the merged tokens' width

    def logit(self, pixel_values, grid_thw):
        import torch

        tokens = self.tower(pixel_values, grid_thw=grid_thw).pooler_output
        return self.head(torch.cat([tokens.mean(0), tokens.max(0).values]))[0]

    def parameters(self):
        return [*self.tower.parameters(), *self.head.parameters()]


def accuracy(probe: Probe, batch, labels) -> float:
    import torch

    with torch.no_grad():
        guesses = [float(probe.logit(pv, g) > 0) for pv, g in batch]
    return float(np.mean(np.array(guesses) == labels))


def train_probe(probe: Probe, train, train_y, steps: int, batch: int, lr: float, seed: int) -> None:
    import torch

    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(train), batch, replace=False)
        logits = torch.stack([probe.logit(*train[i]) for i in pick])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(train_y[pick]))
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--inits", default=",".join(PATCH_INITS), help="patch initialisations to compare")
    p.add_argument("--types", default="Noise,Motion blur,Out of focus blur,Low clarity,Blocking artifacts,"
                                      "Overexposure", help="comma-separated distortion types")
    p.add_argument("--train", type=int, default=400, help="training scenes per type")
    p.add_argument("--test", type=int, default=200, help="held-out scenes per type")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--sizes", default="small", help=f"image sizes: {', '.join(SIZE_CHOICES)} or WxH,...")
    p.add_argument("--max-pixels", type=int, help="the processor's max_pixels (default: the preset's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import torch
    from transformers import AutoImageProcessor

    types = [t.strip() for t in args.types.split(",")]
    unknown = [t for t in types if t not in DISTORTION_TYPES]
    if unknown:
        p.error(f"unknown distortion types {unknown}; choose from: {', '.join(DISTORTION_TYPES)}")
    sizes = parse_sizes(args.sizes)
    inits = [i.strip() for i in args.inits.split(",")]
    spec = PRESETS[args.preset]
    if args.max_pixels:
        spec = replace(spec, max_pixels=args.max_pixels)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {i: build_tiny_model(Path(tmp) / i, replace(spec, patch_init=i)) for i in inits}
        processor = AutoImageProcessor.from_pretrained(folders[inits[0]])
        print(f"preset {args.preset}, images up to {spec.max_pixels} px, {args.train} train / {args.test} test scenes "
              f"per type, {args.steps} steps of {args.batch}, lr {args.lr}; accuracy train / test (chance 0.5)")
        print(f"{'distortion':<24}" + "".join(f"{i:>22}" for i in inits) + "   seconds")
        for k, name in enumerate(types):
            start = time.perf_counter()
            images, labels = scenes(name, args.train + args.test, sizes, args.seed + 1000 * k)
            data = encode(processor, images)
            train, test = data[:args.train], data[args.train:]
            cells = []
            for init in inits:
                torch.manual_seed(args.seed)
                probe = Probe(folders[init], args.threads)
                train_probe(probe, train, labels[:args.train], args.steps, args.batch, args.lr, args.seed)
                cells.append(f"{accuracy(probe, train, labels[:args.train]):.2f} / "
                             f"{accuracy(probe, test, labels[args.train:]):.2f}")
            print(f"{name:<24}" + "".join(f"{c:>22}" for c in cells) + f"   {time.perf_counter() - start:.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
