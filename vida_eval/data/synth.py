"""Synthetic mini-ViDA: photographic (or procedural) scenes with real distortions in known boxes.

Every file of the release layout is written in the real schema, so the same
loader, trainer, inference and scorer run on it as on the real data. The
ground-truth rules (areas, significance, MOS and level) live in
``synth_truth``; the questions and answers about an image in ``synth_texts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import prompts
from ..files import write_json
from ..models.boxes import box_text
from ..parsing import REF_END, REF_START
from ..workers import in_order
from .distortions import apply_distortion
from .layout import BENCH_GT, SUBTASK_FOLDERS, TRAIN_SUBSETS
from .photos import photo_scene
from .sizes import SMALL_SIZES, draw_size, sizes_in_order
from .synth_texts import (
    EFFECTS,
    brief_answer,
    describe_content,
    description_answer,
    detection_answer,
    grounded,
    mcq_items,
    region_answer,
    region_question,
    region_truth,
    zone,
)
from .synth_truth import (
    ALL_TYPES,
    DistortionMix,
    annotate,
    key_distortions,
    public,
    quality_of,
    random_box,
    random_distortions,
)

COLORS = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (230, 210, 40),
    "purple": (130, 50, 160), "orange": (240, 140, 30), "grey": (128, 128, 128), "white": (240, 240, 240),
    "black": (20, 20, 20), "teal": (30, 150, 150),
}


# ------------------------------------------------------------------ geometry


def to_pixels(coords, width, height):
    x1, y1, x2, y2 = coords
    return (round(x1 * width / 1000), round(y1 * height / 1000), round(x2 * width / 1000), round(y2 * height / 1000))


# ------------------------------------------------------------------ scenes

@dataclass
class Scene:
    image: np.ndarray
    objects: list[tuple[str, tuple]] = field(default_factory=list)  # (description, 0..1000 box)
    background: str = ""


def draw_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """A gradient with shapes, textures and text-like strokes."""
    names = list(COLORS)
    c1, c2 = rng.choice(len(names), 2, replace=False)
    t = np.linspace(0, 1, height if rng.random() < 0.5 else width, dtype=np.float32)
    a, b = np.array(COLORS[names[c1]], np.float32), np.array(COLORS[names[c2]], np.float32)
    ramp = a[None] * (1 - t[:, None]) + b[None] * t[:, None]
    img = np.broadcast_to(ramp[:, None, :], (height, width, 3)) if len(t) == height else \
        np.broadcast_to(ramp[None, :, :], (height, width, 3))
    canvas = Image.fromarray(np.ascontiguousarray(img).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    scene = Scene(np.empty(0), background=f"a {names[c1]}-to-{names[c2]} gradient background")
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.choice(["rectangle", "ellipse", "triangle", "stripes", "strokes"])
        color = names[int(rng.integers(len(names)))]
        w, h = int(rng.integers(width // 8, width // 2)), int(rng.integers(height // 8, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if kind == "rectangle":
            draw.rectangle([x, y, x + w, y + h], fill=COLORS[color], outline=(0, 0, 0))
        elif kind == "ellipse":
            draw.ellipse([x, y, x + w, y + h], fill=COLORS[color])
        elif kind == "triangle":
            draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=COLORS[color])
        elif kind == "stripes":
            step = int(rng.integers(4, 12))
            for k in range(0, w, step * 2):
                draw.rectangle([x + k, y, x + k + step, y + h], fill=COLORS[color])
        else:
            for _ in range(int(rng.integers(3, 8))):
                pts = [(x + int(rng.integers(0, w)), y + int(rng.integers(0, h))) for _ in range(3)]
                draw.line(pts, fill=COLORS[color], width=int(rng.integers(2, 5)))
        label = {"strokes": f"{color} text-like strokes", "stripes": f"a {color} striped texture"}.get(
            kind, f"a {color} {kind}")
        coords = (round(1000 * x / width), round(1000 * y / height),
                  round(1000 * (x + w) / width), round(1000 * (y + h) / height))
        scene.objects.append((label, coords))
    scene.image = np.asarray(canvas).copy()
    return scene


SCENE_KINDS = ("photos", "shapes")  # crops of real photographs (photos.py); gradients with shapes


def make_scene(rng: np.random.Generator, width: int, height: int, kind: str = "photos") -> Scene:
    if kind == "shapes":
        return draw_scene(rng, width, height)
    if kind != "photos":
        raise ValueError(f"scenes {kind!r}: choose from {', '.join(SCENE_KINDS)}")
    image, objects = photo_scene(rng, width, height)
    return Scene(image, objects)


# ----------------------------------------------------------------- writing

def conversation(image: str, user: str, answer: str, system: str | None = None, rid: str = "") -> dict:
    rec = {"id": rid, "image": image,
           "conversations": [{"from": "human", "value": f"<image>\n{user}"}, {"from": "gpt", "value": answer}]}
    if system is not None:
        rec["system_prompt"] = system
    return rec


@dataclass
class Sample:
    name: str
    width: int
    height: int
    scene: Scene
    distortions: list[dict]
    mos: float
    level: str


def make_sample(seed: int, index: int, split: str, sizes=SMALL_SIZES, size: tuple[int, int] | None = None,
                scenes: str = "photos", mix: DistortionMix = ALL_TYPES) -> Sample:
    """One image and its distortions; its size is *size*, or drawn from *sizes* (a list, or a size -> count table);
    its scene of the kind *scenes* (SCENE_KINDS), its distortions drawn from *mix*."""
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1])
    drawn = draw_size(rng, sizes)
    width, height = size or drawn
    scene = make_scene(rng, width, height, scenes)
    distortions = annotate(random_distortions(rng, mix))
    for d in distortions:
        apply_distortion(scene.image, d["distortion"], d["severity"], to_pixels(d["coordinates"], width, height), rng)
    mos, level = quality_of(distortions)
    ext = "png" if rng.random() < 0.2 else "jpg"
    return Sample(f"synth_{split}_{index:05d}.{ext}", width, height, scene, distortions, mos, level)


def save_image(sample: Sample, folder: Path) -> None:
    img = Image.fromarray(sample.scene.image)
    if sample.name.endswith(".png"):
        img.save(folder / sample.name)
    else:
        img.save(folder / sample.name, quality=95)


def is_choice(j: int, share: float) -> bool:
    """Whether the *j*-th extra question is multiple-choice, spread evenly: floor((j + 1) s) > floor(j s), so a share
    of 0.5 alternates region-perception (j even) and multiple-choice (j odd)."""
    return int((j + 1) * share) > int(j * share)


def train_records(sample: Sample, rng: np.random.Generator, questions: int = 0,
                  choice_share: float = 0.5) -> dict[str, list[dict]]:
    """The nine ViDA subsets' records for one training image: one round of each subset's questions (about 13),
    then, to reach *questions* records, further questions: multiple-choice ones (a *choice_share* of them) and
    region-perception ones, spread evenly (the real release asks about 45 per image: 534K samples over 11,848
    images)."""
    n, ds = sample.name, sample.distortions
    stem = n.rsplit(".", 1)[0]
    out: dict[str, list[dict]] = {k: [] for k in TRAIN_SUBSETS}
    content = describe_content(sample.scene.objects, sample.scene.background)
    out["vida_d_assess"].append(conversation(n, prompts.DESCRIPTION_USER, description_answer(content, ds, sample.level),
                                             prompts.DESCRIPTION_SYSTEM, f"{stem}_assess"))
    out["vida_d_brief_assess"].append(conversation(n, "Briefly evaluate the image quality and give your reasons.",
                                                   brief_answer(ds, sample.level), rid=f"{stem}_brief"))
    for k, d in enumerate(ds):
        out["vida_d_dist_assess"].append(conversation(
            n, f"How does the {grounded(d['severity'], d['distortion'], d['coordinates'])} affect the image?",
            f"In {zone(d['coordinates'])}, {EFFECTS[d['distortion']]}, which lowers the perceived quality.",
            prompts.GROUNDING_SYSTEM, f"{stem}_dist{k}"))
        ref = f"{REF_START}{d['severity'].lower()} {d['distortion'].lower()}{REF_END}"
        same = [x for x in ds if x["distortion"] == d["distortion"] and x["severity"] == d["severity"]]
        if same[0] is d:
            out["vida_g_ref_grounding"].append(conversation(
                n, f"Please provide the bounding box coordinates of the {ref}.",
                ref + "".join(box_text(x["coordinates"]) for x in same), prompts.GROUNDING_SYSTEM, f"{stem}_ref{k}"))
    out["vida_g_dist_detect"].append(conversation(n, prompts.DETECTION_QUESTION, detection_answer(ds),
                                                  prompts.GROUNDING_SYSTEM, f"{stem}_detect"))
    for k, region in enumerate(bench_regions(rng, ds)):
        out["vida_g_reg_perception"].append(conversation(n, region_question(region),
                                                         region_answer(region_truth(ds, region)),
                                                         prompts.GROUNDING_SYSTEM, f"{stem}_reg{k}"))
    for k, q in enumerate(mcq_items(rng, ds)):
        out["vida_p_mcq"].append(mcq_record(n, q, f"{stem}_mcq{k}"))
    keys = key_distortions(ds)
    qa = (f"The most significant distortion is {keys[0]['severity'].lower()} {keys[0]['distortion'].lower()} "
          f"in {zone(keys[0]['coordinates'])}." if keys else "There is no obvious distortion in the image.")
    out["vida_p_qa"].append(conversation(n, "What is the most significant distortion in this image, and where is it?",
                                         qa, rid=f"{stem}_qa"))
    out["vida_p_score"].append(conversation(n, prompts.SCORING_USER,
                                            f"{prompts.SCORING_ASSISTANT_PREFIX} {sample.level}.",
                                            prompts.SCORING_SYSTEM, f"{stem}_score"))
    extra = questions - sum(len(v) for v in out.values())
    for j in range(max(0, extra)):
        if not is_choice(j, choice_share):
            region = random_region(rng)
            out["vida_g_reg_perception"].append(conversation(
                n, region_question(region), region_answer(region_truth(ds, region)), prompts.GROUNDING_SYSTEM,
                f"{stem}_reg{len(out['vida_g_reg_perception'])}"))
        else:
            items = mcq_items(rng, ds)
            q = items[int(rng.integers(len(items)))]
            out["vida_p_mcq"].append(mcq_record(n, q, f"{stem}_mcq{len(out['vida_p_mcq'])}"))
    return out


def mcq_record(image: str, item: dict, rid: str) -> dict:
    """A multiple-choice training record: the question with its lettered candidates, answered by the letter."""
    letter = prompts.OPTION_LETTERS[item["candidates"].index(item["correct_ans"])]
    return conversation(image, prompts.perception_question(item["question"], item["candidates"]), f"{letter}.",
                        rid=rid)


def bench_regions(rng: np.random.Generator, distortions: list[dict]) -> list[list[int]]:
    """Two region questions: one around a distortion (when there is one) and one random region."""
    regions = []
    if distortions:
        d = distortions[int(rng.integers(len(distortions)))]["coordinates"]
        m = [int(v) for v in rng.integers(0, 60, 4)]
        regions.append([max(0, d[0] - m[0]), max(0, d[1] - m[1]), min(999, d[2] + m[2]), min(999, d[3] + m[3])])
    regions.append(random_region(rng))
    return regions


def random_region(rng: np.random.Generator) -> list[int]:
    return random_box(rng, 200, 600)


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def synthesize(out: str | Path, images: int = 200, bench_images: int | None = None, seed: int = 0,
               progress=None, sizes=SMALL_SIZES, train_sizes=None, scenes: str = "photos",
               questions: int = 0, mix: DistortionMix = ALL_TYPES, choice_share: float = 0.5,
               workers: int = 1) -> Path:
    """Write a complete synthetic ViDA release under *out*; returns *out*. Its images are *scenes* (SCENE_KINDS);
    each training image has at least *questions* records (``train_records``: *choice_share* of those beyond one
    round are multiple-choice) and distortions drawn from *mix*.

    *sizes* (bench) and *train_sizes* (training, default *sizes*) are lists of (width, height) drawn uniformly,
    or size -> count tables (``sizes.VIDA_BENCH_SIZES``) drawn by weight; a split with as many images as its
    table counts takes every size exactly that often, in a seeded order.

    Every image draws from its own seeded generators, so *workers* processes write the same release byte for
    byte as one.
    """
    out = Path(out)
    bench_images = bench_images if bench_images is not None else max(4, images // 4)
    train_dir, val_dir = out / "train" / "images", out / "val" / "images"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    subsets: dict[str, list[dict]] = {k: [] for k in TRAIN_SUBSETS}
    metadata = []
    train_sizes = train_sizes or sizes
    jobs = [(seed, i, size, train_sizes, scenes, mix, questions, choice_share, train_dir)
            for i, size in enumerate(exact_sizes(seed, images, train_sizes, 5))]
    for records, meta in in_order(train_item, jobs, workers, progress):
        for k, recs in records.items():
            subsets[k].extend(recs)
        metadata.append(meta)
    qwen2 = out / "train" / "ViDA-qwen2"
    combined = []
    for name, (prefix, file) in TRAIN_SUBSETS.items():
        write_jsonl(qwen2 / SUBTASK_FOLDERS[prefix] / file, subsets[name])
        combined.extend(subsets[name])
    write_json(qwen2 / "combined.json", combined)
    (qwen2 / "jsonl_stats.txt").write_text("".join(f"{TRAIN_SUBSETS[k][1]}: {len(v)}\n" for k, v in subsets.items()))
    write_json(out / "train" / "train_metadata.json", metadata)
    write_bench(out, seed, bench_images, val_dir, progress, sizes, scenes, mix, workers)
    return out


def train_item(job: tuple) -> tuple[dict[str, list[dict]], dict]:
    """One training image written to its folder: its records by subset and its train_metadata.json entry."""
    seed, i, size, sizes, scenes, mix, questions, choice_share, folder = job
    s = make_sample(seed, i, "train", sizes, size, scenes, mix)
    save_image(s, folder)
    records = train_records(s, np.random.default_rng([seed, i, 2]), questions, choice_share)
    meta = {"image": s.name, "width": s.width, "height": s.height, "mos": s.mos, "level": s.level,
            "distortions": [public(d) for d in s.distortions]}
    return records, meta


def exact_sizes(seed: int, n: int, sizes, stream: int = 4) -> list[tuple[int, int] | None]:
    """Per image, its size: a table's exact distribution in a seeded order when *n* is its count, else None
    (each image draws its own)."""
    if isinstance(sizes, dict) and n == sum(sizes.values()):
        exact = sizes_in_order(sizes)
        order = np.random.default_rng([seed, stream]).permutation(n)
        return [exact[k] for k in order]
    return [None] * n


def bench_item(job: tuple) -> tuple[dict, list[dict], list[dict]]:
    """One bench image written to its folder: its metadata entry, multiple-choice items and region questions."""
    seed, i, size, sizes, scenes, mix, folder = job
    s = make_sample(seed, i, "val", sizes, size, scenes, mix)
    save_image(s, folder)
    rng = np.random.default_rng([seed, i, 3])
    meta = {"id": i, "image": s.name, "width": s.width, "height": s.height, "mos": s.mos, "level": s.level,
            "distortions": [public(d) for d in s.distortions]}
    mcq = [{"image": s.name, **q} for q in mcq_items(rng, s.distortions)]
    reg = []
    for region in bench_regions(rng, s.distortions):
        truth = region_truth(s.distortions, region) or [
            {"distortion": "No distortion", "severity": None, "coordinates": region}]
        reg.append({"image": s.name, "width": s.width, "height": s.height, "question": region_question(region),
                    "distortions": truth})
    return meta, mcq, reg


def write_bench(out: Path, seed: int, n: int, val_dir: Path, progress=None, sizes=SMALL_SIZES,
                scenes: str = "photos", mix: DistortionMix = ALL_TYPES, workers: int = 1) -> None:
    mcq, reg, bench, meta = [], [], [], []
    jobs = [(seed, i, size, sizes, scenes, mix, val_dir) for i, size in enumerate(exact_sizes(seed, n, sizes))]
    for m, items, regions in in_order(bench_item, jobs, workers, progress):
        bench.append({k: m[k] for k in ("id", "image", "width", "height")})
        meta.append(m)
        mcq += [{"id": len(mcq) + k, **q} for k, q in enumerate(items)]
        reg += [{"id": len(reg) + k, **r} for k, r in enumerate(regions)]
    root = out / "val" / "ViDA-Bench"
    release = {
        "mcq.json": [{k: q[k] for k in ("id", "image", "concern", "question", "candidates")} for q in mcq],
        "reg-p_ques.json": [{k: r[k] for k in ("id", "image", "width", "height", "question")} for r in reg],
        "benchmark.json": bench,
    }
    for name, data in release.items():
        write_json(root / "release" / name, data)
    for name, data in zip(BENCH_GT, (mcq, reg, meta)):
        write_json(root / "ground_truth" / name, data)
