"""Teach a tiny model's random vision tower to see the distortions before its language model learns to name them.

Trained from the answers alone, a random tower learns the distortions that move a region's mean colour (exposure,
solid colour) and never blur, noise or blocking (bench/RESULTS.md): one sentence about a whole image is a weak
signal for a per-patch texture feature. ``vida-eval tiny-warmup`` gives the tower a dense one, from the boxes a
synthetic release records for its training images (``train/train_metadata.json``): every merged token of every
image has a target per distortion type,

    target[token, type] = max severity level / 3 over the boxes of that type whose area holds the token's centre,

0 where none does (levels 1, 2, 3 for slight, moderate, severe), and a linear head on the token learns the ten
targets under binary cross-entropy. The images go through the model's own image processor, so the tower sees the
tokens that training and evaluation will give it. The written model is the input model with the tower's (and its
merger's) weights replaced; the head is dropped. A share of the images is held out: per type, the area under the
ROC curve of the head's score for tokens inside a box of the type against every other token says how well the
tower has learnt to see it (0.5: not at all).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.distortions import SEVERITY_LEVEL
from ..vocab import DISTORTION_TYPES
from ..workers import in_order

TRAIN_METADATA = Path("train") / "train_metadata.json"


@dataclass(frozen=True)
class WarmupArgs:
    steps: int = 1200
    batch: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    held_out: float = 0.05
    seed: int = 0
    workers: int = min(8, os.cpu_count() or 1)


def token_targets(grid_thw, distortions: list[dict], merge: int) -> np.ndarray:
    """(tokens, types) targets of one image: see the module docstring. Tokens are the merged ones, in the
    processor's raster order over the (rows / merge) x (columns / merge) grid of patches; boxes are 0..1000."""
    _, gh, gw = (int(v) for v in grid_thw)
    rows, cols = gh // merge, gw // merge
    y = (np.arange(rows) + 0.5) * 1000 / rows
    x = (np.arange(cols) + 0.5) * 1000 / cols
    out = np.zeros((rows, cols, len(DISTORTION_TYPES)), dtype=np.float32)
    for d in distortions:
        x1, y1, x2, y2 = d["coordinates"]
        inside = ((y >= y1) & (y < y2))[:, None] & ((x >= x1) & (x < x2))[None, :]
        k = DISTORTION_TYPES.index(d["distortion"])
        out[..., k] = np.maximum(out[..., k], inside * SEVERITY_LEVEL[d["severity"]] / 3)
    return out.reshape(rows * cols, -1)


def read_training_boxes(release: Path) -> list[dict]:
    """The training images' metadata records (image, distortions with severity and 0..1000 coordinates)."""
    from ..records import InputError

    path = release / TRAIN_METADATA
    if not path.is_file():
        raise InputError(f"{path}: no training metadata; tiny-warmup needs a synthetic release (vida-eval data "
                         f"synth), whose metadata holds every training image's boxes")
    records = json.loads(path.read_text(encoding="utf-8"))
    for i, r in enumerate(records):
        if not (isinstance(r, dict) and isinstance(r.get("image"), str) and isinstance(r.get("distortions"), list)):
            raise InputError(f"{path} record {i}: not an object with an image name and a distortions list")
        for d in r["distortions"]:
            if not (isinstance(d, dict) and d.get("distortion") in DISTORTION_TYPES
                    and d.get("severity") in SEVERITY_LEVEL and len(d.get("coordinates") or []) == 4):
                raise InputError(f"{path} record {i} ({r['image']}): a distortion without a known type, a severity "
                                 f"and four coordinates: {d!r}")
        if not (release / "train" / "images" / r["image"]).is_file():
            raise InputError(f"{path} record {i}: image {r['image']!r} not found under {release / 'train' / 'images'}")
    return records


def _encode(job):
    """pixel_values (bfloat16), grid_thw and targets of one image: run in a worker process."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    model_dir, path, distortions = job
    processor = _encode.cache.get(model_dir) or AutoImageProcessor.from_pretrained(model_dir)
    _encode.cache[model_dir] = processor
    with Image.open(path) as im:
        out = processor(images=[im.convert("RGB")], return_tensors="pt")
    grid = out["image_grid_thw"][0]
    targets = token_targets(grid, distortions, processor.merge_size)
    return out["pixel_values"].to(torch.bfloat16), grid, torch.from_numpy(targets)


_encode.cache = {}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a positive scores above a negative (ties count half)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _is_weights(path: Path) -> bool:
    return path.name.startswith("model") and ".safetensors" in path.name


def vision_tower(model):
    """The vision tower (with its merger) of a loaded image-text model of any family."""
    return next(m for name, m in model.named_modules() if name.endswith("visual"))


def write_weights(model, model_dir: Path, out: Path) -> None:
    """*model*'s weights into *out*, beside *model_dir*'s other files as they are (config, tokenizer, processor)."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    for f in staging.iterdir():
        if not _is_weights(f):
            f.unlink()
    for f in model_dir.iterdir():
        if f.is_file() and not _is_weights(f):
            shutil.copy2(f, staging / f.name)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def split_held_out(items: list, share: float, rng: np.random.Generator) -> tuple[list, list]:
    """(held out, training): a random *share* of *items* kept out (none when there is only one)."""
    order = rng.permutation(len(items))
    n_held = round(share * len(items)) if len(items) > 1 else 0
    return [items[i] for i in order[:n_held]], [items[i] for i in order[n_held:]]


def optimise(params: list, schedule, steps: int, lr: float, next_loss, log=print) -> list[float]:
    """*steps* steps of AdamW (weight decay 0.05) over *params* at *lr* times ``schedule(step)``, the gradients
    clipped to norm 1; ``next_loss(step)`` draws a batch and returns its loss. Logs the mean loss every tenth of
    the steps; returns every step's loss."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    tail, losses = max(1, steps // 10), []
    for step in range(steps):
        loss = next_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % tail == 0:
            log(f"step {step + 1}/{steps}: loss {np.mean(losses[-tail:]):.4f}")
    return losses


def loss_report(losses: list[float], steps: int) -> dict:
    """The first step's loss and the mean over the last tenth of the steps."""
    tail = max(1, steps // 10)
    return {"first_loss": losses[0] if losses else None,
            "last_loss": float(np.mean(losses[-tail:])) if losses else None}


def add_training_args(sp, defaults, unit: str, held_out_for: str) -> None:
    """--steps, --batch, --lr, --held-out and --seed of a warm-up command, defaults from its args dataclass."""
    from ..cli_args import positive_int, share

    sp.add_argument("--steps", type=positive_int, default=defaults.steps)
    sp.add_argument("--batch", type=positive_int, default=defaults.batch, help=f"{unit} per step")
    sp.add_argument("--lr", type=float, default=defaults.lr)
    sp.add_argument("--held-out", type=share, default=defaults.held_out,
                    help=f"share of the {unit} kept out of training for {held_out_for}")
    sp.add_argument("--seed", type=int, default=defaults.seed)


def held_out_problem(args, unit: str) -> str | None:
    if args.held_out >= 1:
        return f"--held-out {args.held_out}: keep a share below 1 of the {unit} for training"
    return None


def warm_up(model_dir: Path, release: Path, out: Path, args: WarmupArgs = WarmupArgs(), log=print) -> dict:
    """Train the tower of the model in *model_dir* on the dense targets of *release*'s training images; write the
    model with the trained tower to *out*. Returns the report (loss, held-out AUC per type, seconds)."""
    import torch
    from transformers import AutoModelForImageTextToText

    start = time.perf_counter()
    records = read_training_boxes(release)
    jobs = [(str(model_dir), release / "train" / "images" / r["image"], r["distortions"]) for r in records]
    data = list(in_order(_encode, jobs, args.workers))
    encoded = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    held, train = split_held_out(data, args.held_out, rng)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    tower = vision_tower(model).to(device)
    head = torch.nn.Linear(model.config.vision_config.hidden_size, len(DISTORTION_TYPES)).to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def forward(items):
        pixels = torch.cat([p for p, _, _ in items]).to(device, torch.float32)
        grid = torch.stack([g for _, g, _ in items]).to(device)
        with autocast:
            return head(tower(pixels, grid_thw=grid).pooler_output).float()

    def next_loss(step):
        items = [train[i] for i in rng.choice(len(train), min(args.batch, len(train)), replace=False)]
        return torch.nn.functional.binary_cross_entropy_with_logits(
            forward(items), torch.cat([t for _, _, t in items]).to(device))

    def schedule(s):
        return (min(1.0, (s + 1) / max(1, args.warmup_steps)) * 0.5
                * (1 + np.cos(np.pi * min(1.0, s / max(1, args.steps)))))

    tower.train()
    losses = optimise([*tower.parameters(), *head.parameters()], schedule, args.steps, args.lr, next_loss, log)
    trained = time.perf_counter() - start - encoded

    auc = {}
    if held:
        tower.eval()
        with torch.no_grad():
            scores = torch.cat([forward(held[i:i + args.batch]) for i in range(0, len(held), args.batch)]).cpu()
        targets = torch.cat([t for _, _, t in held])
        auc = {t: roc_auc(scores[:, k].numpy(), targets[:, k].numpy() > 0) for k, t in enumerate(DISTORTION_TYPES)}

    tower.to("cpu")
    write_weights(model, model_dir, out)
    report = {"model": str(model_dir), "release": str(release), "images": len(data), "held_out": len(held),
              "args": args.__dict__, **loss_report(losses, args.steps), "held_out_auc": auc,
              "encode_seconds": round(encoded, 1), "train_seconds": round(trained, 1), "device": device}
    (out / "vida_warmup.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def register(sub) -> None:
    from ..cli_args import existing_dir, positive_int
    from ..records import InputError

    sp = sub.add_parser("tiny-warmup", help="train a tiny model's vision tower on the boxes of a synthetic "
                                            "release's training images (a target per merged token and type)")
    sp.add_argument("model", type=existing_dir, help="a tiny model folder (vida-eval tiny-model)")
    sp.add_argument("--release", type=existing_dir, required=True, help="a synthetic release (vida-eval data synth)")
    sp.add_argument("--out", type=Path, required=True, help="where the model with the trained tower goes")
    add_training_args(sp, WarmupArgs, "images", "the per-type AUC")
    sp.add_argument("--workers", type=positive_int, default=WarmupArgs.workers, help="image-encoding processes")

    def run(args) -> int:
        if problem := held_out_problem(args, "images"):
            raise InputError(problem)
        wargs = WarmupArgs(steps=args.steps, batch=args.batch, lr=args.lr, held_out=args.held_out, seed=args.seed,
                           workers=args.workers)
        report = warm_up(Path(args.model), Path(args.release), args.out, wargs)
        print(f"{report['images']} images encoded in {report['encode_seconds']} s, {args.steps} steps in "
              f"{report['train_seconds']} s on {report['device']}: loss {report['first_loss']:.4f} -> "
              f"{report['last_loss']:.4f}")
        if report["held_out_auc"]:
            print(f"held-out token AUC per type ({report['held_out']} images; 0.5 = not seen):")
            for t, a in report["held_out_auc"].items():
                print(f"  {t:<28}{a:.3f}")
        print(f"written to {args.out}")
        return 0

    sp.set_defaults(func=run)
