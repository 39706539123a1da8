"""Synthetic mini-ViDA: photographic (or procedural) scenes with real distortions in known boxes.

Every file of the release layout is written in the real schema, so the same
loader, trainer, inference and scorer run on it as on the real data.

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

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import prompts
from ..files import write_json
from ..models.boxes import box_text
from ..parsing import REF_END, REF_START
from ..vocab import DISTORTION_TYPES, QUALITY_LEVELS, SEVERITIES
from .distortions import SEVERITY_LEVEL, apply_distortion
from .layout import BENCH_GT, SUBTASK_FOLDERS, TRAIN_SUBSETS
from .photos import photo_scene
from .sizes import SMALL_SIZES, draw_size, sizes_in_order

COLORS = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (230, 210, 40),
    "purple": (130, 50, 160), "orange": (240, 140, 30), "grey": (128, 128, 128), "white": (240, 240, 240),
    "black": (20, 20, 20), "teal": (30, 150, 150),
}
EFFECTS = {
    "Low clarity": "fine details are soft and hard to discern",
    "Out of focus blur": "edges are smeared and the region looks out of focus",
    "Motion blur": "shapes are streaked along one direction",
    "Noise": "grainy speckles cover the surfaces",
    "Blocking artifacts": "visible square blocks break up smooth areas",
    "Overexposure": "highlights are washed out and detail is lost in bright areas",
    "Underexposure": "the region is too dark and shadow detail is lost",
    "Edge aliasing effect": "edges look jagged and stair-stepped",
    "Edge ringing effect": "halos appear along the edges",
    "Meaningless solid color": "a flat patch of color hides the content",
}
GLOBAL_FRACTION = 0.9


# ------------------------------------------------------------------ geometry

def zone(coords) -> str:
    """Where a 0..1000 box sits: 'the upper-left area', ..., or 'the whole image'."""
    x1, y1, x2, y2 = coords
    if (x2 - x1) * (y2 - y1) >= GLOBAL_FRACTION * 1e6:
        return "the whole image"
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    v = "upper" if cy < 333 else ("lower" if cy > 666 else "middle")
    h = "left" if cx < 333 else ("right" if cx > 666 else "center")
    if v == "middle" and h == "center":
        return "the center area"
    return f"the {v}-{h} area" if v != "middle" else f"the middle-{h} area"


ZONES = [f"the {v}-{h} area" for v in ("upper", "middle", "lower") for h in ("left", "center", "right")
         if not (v == "middle" and h == "center")] + ["the center area", "the whole image"]


def to_pixels(coords, width, height):
    x1, y1, x2, y2 = coords
    return (round(x1 * width / 1000), round(y1 * height / 1000), round(x2 * width / 1000), round(y2 * height / 1000))


def grounded(severity: str, name: str, coords, capital=False) -> str:
    label = f"{severity} {name.lower()}" if capital else f"{severity.lower()} {name.lower()}"
    return f"{REF_START}{label}{REF_END}{box_text(coords)}"


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


# ------------------------------------------------------------ annotations

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


# ------------------------------------------------------------------ texts

def detection_answer(distortions: list[dict]) -> str:
    """Blocks 'Type:' + severity references + boxes, types in first-appearance order."""
    if not distortions:
        return "There is no distortion in the image."
    lines = []
    for t in dict.fromkeys(d["distortion"] for d in distortions):
        lines.append(f"{t}:")
        for sev in dict.fromkeys(d["severity"] for d in distortions if d["distortion"] == t):
            boxes = "".join(box_text(d["coordinates"]) for d in distortions if d["distortion"] == t and d["severity"] == sev)
            lines.append(f"{REF_START}{sev} {t.lower()}{REF_END}{boxes}")
    return "\n".join(lines)


def region_truth(distortions: list[dict], region) -> list[dict]:
    """Distortions inside a question region: each clipped to the region (at least 30% of it inside)."""
    out = []
    rx1, ry1, rx2, ry2 = region
    for d in distortions:
        x1, y1, x2, y2 = d["coordinates"]
        ix1, iy1, ix2, iy2 = max(x1, rx1), max(y1, ry1), min(x2, rx2), min(y2, ry2)
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        if (ix2 - ix1) * (iy2 - iy1) < 0.3 * (x2 - x1) * (y2 - y1):
            continue
        out.append({"distortion": d["distortion"], "severity": d["severity"], "coordinates": [ix1, iy1, ix2, iy2]})
    return out


def region_answer(truth: list[dict]) -> str:
    if not truth:
        return "No distortion affects this region."
    return "\n".join(f"{d['distortion']}: {REF_START}{d['severity']} {d['distortion'].lower()}{REF_END}"
                     f"{box_text(d['coordinates'])}" for d in truth)


def region_question(region) -> str:
    return f"What distortion affects this region {box_text(region)}?"


def describe_content(scene: Scene) -> str:
    parts = [o for o, _ in scene.objects[:4]]
    listing = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    return f"The image shows {listing} over {scene.background}." if scene.background else \
        f"The image shows {listing}."


def description_answer(scene: Scene, distortions: list[dict], level: str) -> str:
    """The four-step assessment: content, grounded distortions, key distortions, conclusion."""
    lines = [describe_content(scene)]
    if distortions:
        for d in distortions:
            lines.append(f"There is one {grounded(d['severity'], d['distortion'], d['coordinates'])} affecting "
                         f"{zone(d['coordinates'])}, where {EFFECTS[d['distortion']]}.")
        keys = key_distortions(distortions)
        refs = " and the ".join(grounded(d["severity"], d["distortion"], d["coordinates"]) for d in keys)
        verb = "is the key distortion" if len(keys) == 1 else "are the key distortions"
        lines.append(f"The {refs} {verb} for the overall quality, since it covers a large or important part of the "
                     f"image. Sharpness, clarity and detail are reduced where it appears.")
    else:
        lines.append("There is no distortion in the image; the content is clearly visible, with crisp edges, "
                     "even lighting and clean textures.")
        lines.append("No key distortion lowers the quality. Sharpness, clarity and detail are well preserved.")
    lines.append(f"Thus, the quality of the image is {level}.")
    return "\n".join(lines)


def brief_answer(distortions: list[dict], level: str) -> str:
    if not distortions:
        return f"The image has no visible distortion. Thus, the quality of the image is {level}."
    refs = ", ".join(grounded(d["severity"], d["distortion"], d["coordinates"]) for d in distortions)
    return f"The image has {refs}. Thus, the quality of the image is {level}."


def mcq_items(rng: np.random.Generator, distortions: list[dict]) -> list[dict]:
    """Questions over the four concerns with four text candidates and the correct one."""
    items = []
    present = list(dict.fromkeys(d["distortion"] for d in distortions))
    absent = [t for t in DISTORTION_TYPES if t not in present]

    def add(concern, question, correct, others):
        others = [o for o in dict.fromkeys(others) if o != correct]
        picks = [others[i] for i in rng.choice(len(others), 3, replace=False)]
        cands = [correct, *picks]
        order = rng.permutation(4)
        items.append({"concern": concern, "question": question, "candidates": [cands[i] for i in order],
                      "correct_ans": correct})

    if distortions:
        d = distortions[int(rng.integers(len(distortions)))]
        add("type", "Which type of distortion appears in the image?", d["distortion"], absent)
        if present.count(d["distortion"]) == 1 and sum(x["distortion"] == d["distortion"] for x in distortions) == 1:
            add("severity", f"How severe is the {d['distortion'].lower()} in the image?", d["severity"],
                [s for s in SEVERITIES if s != d["severity"]] + ["Not present"])
            where = zone(d["coordinates"])
            add("position", f"Where is the {d['distortion'].lower()} located in the image?", where,
                [z for z in ZONES if z != where])
        keys = key_distortions(distortions)
        if len(present) >= 2 and len({k["distortion"] for k in keys}) == 1:
            add("significance", "Which distortion has the most significant impact on the image quality?",
                keys[0]["distortion"], [p for p in present if p != keys[0]["distortion"]] + absent)
    else:
        add("type", "Which of the following describes the distortion in the image?", "No distortion", absent)
    return items


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
    out["vida_d_assess"].append(conversation(n, prompts.DESCRIPTION_USER, description_answer(sample.scene, ds, sample.level),
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
        letter = prompts.OPTION_LETTERS[q["candidates"].index(q["correct_ans"])]
        out["vida_p_mcq"].append(conversation(n, prompts.perception_question(q["question"], q["candidates"]),
                                              f"{letter}.", rid=f"{stem}_mcq{k}"))
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
            letter = prompts.OPTION_LETTERS[q["candidates"].index(q["correct_ans"])]
            out["vida_p_mcq"].append(conversation(n, prompts.perception_question(q["question"], q["candidates"]),
                                                  f"{letter}.", rid=f"{stem}_mcq{len(out['vida_p_mcq'])}"))
    return out


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
               questions: int = 0, mix: DistortionMix = ALL_TYPES, choice_share: float = 0.5) -> Path:
    """Write a complete synthetic ViDA release under *out*; returns *out*. Its images are *scenes* (SCENE_KINDS);
    each training image has at least *questions* records (``train_records``: *choice_share* of those beyond one
    round are multiple-choice) and distortions drawn from *mix*.

    *sizes* (bench) and *train_sizes* (training, default *sizes*) are lists of (width, height) drawn uniformly,
    or size -> count tables (``sizes.VIDA_BENCH_SIZES``) drawn by weight; a split with as many images as its
    table counts takes every size exactly that often, in a seeded order.
    """
    out = Path(out)
    bench_images = bench_images if bench_images is not None else max(4, images // 4)
    train_dir, val_dir = out / "train" / "images", out / "val" / "images"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    subsets: dict[str, list[dict]] = {k: [] for k in TRAIN_SUBSETS}
    metadata = []
    train_sizes = train_sizes or sizes
    for i, size in enumerate(exact_sizes(seed, images, train_sizes, 5)):
        s = make_sample(seed, i, "train", train_sizes, size, scenes, mix)
        save_image(s, train_dir)
        rng = np.random.default_rng([seed, i, 2])
        for k, recs in train_records(s, rng, questions, choice_share).items():
            subsets[k].extend(recs)
        metadata.append({"image": s.name, "width": s.width, "height": s.height, "mos": s.mos, "level": s.level,
                         "distortions": [public(d) for d in s.distortions]})
        if progress:
            progress(1)
    qwen2 = out / "train" / "ViDA-qwen2"
    combined = []
    for name, (prefix, file) in TRAIN_SUBSETS.items():
        write_jsonl(qwen2 / SUBTASK_FOLDERS[prefix] / file, subsets[name])
        combined.extend(subsets[name])
    write_json(qwen2 / "combined.json", combined)
    (qwen2 / "jsonl_stats.txt").write_text("".join(f"{TRAIN_SUBSETS[k][1]}: {len(v)}\n" for k, v in subsets.items()))
    write_json(out / "train" / "train_metadata.json", metadata)
    write_bench(out, seed, bench_images, val_dir, progress, sizes, scenes, mix)
    return out


def exact_sizes(seed: int, n: int, sizes, stream: int = 4) -> list[tuple[int, int] | None]:
    """Per image, its size: a table's exact distribution in a seeded order when *n* is its count, else None
    (each image draws its own)."""
    if isinstance(sizes, dict) and n == sum(sizes.values()):
        exact = sizes_in_order(sizes)
        order = np.random.default_rng([seed, stream]).permutation(n)
        return [exact[k] for k in order]
    return [None] * n


def write_bench(out: Path, seed: int, n: int, val_dir: Path, progress=None, sizes=SMALL_SIZES,
                scenes: str = "photos", mix: DistortionMix = ALL_TYPES) -> None:
    mcq, reg, bench, meta = [], [], [], []
    for i, size in enumerate(exact_sizes(seed, n, sizes)):
        s = make_sample(seed, i, "val", sizes, size, scenes, mix)
        save_image(s, val_dir)
        rng = np.random.default_rng([seed, i, 3])
        bench.append({"id": i, "image": s.name, "width": s.width, "height": s.height})
        meta.append({"id": i, "image": s.name, "width": s.width, "height": s.height, "mos": s.mos, "level": s.level,
                     "distortions": [public(d) for d in s.distortions]})
        for q in mcq_items(rng, s.distortions):
            mcq.append({"id": len(mcq), "image": s.name, **q})
        for region in bench_regions(rng, s.distortions):
            truth = region_truth(s.distortions, region) or [
                {"distortion": "No distortion", "severity": None, "coordinates": region}]
            reg.append({"id": len(reg), "image": s.name, "width": s.width, "height": s.height,
                        "question": region_question(region), "distortions": truth})
        if progress:
            progress(1)
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
