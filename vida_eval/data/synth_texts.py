"""The questions and answers about a synthetic ViDA image, written from its ground truth (``synth_truth``) in the
wording, special tokens and box convention of the real release."""

from __future__ import annotations

import numpy as np

from ..models.boxes import box_text
from ..parsing import REF_END, REF_START
from ..vocab import DISTORTION_TYPES, SEVERITIES
from .synth_truth import GLOBAL_FRACTION, key_distortions

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


ZONES = [f"the {v}-{h} area" for v in ("upper", "middle", "lower") for h in ("left", "center", "right")
         if not (v == "middle" and h == "center")] + ["the center area", "the whole image"]


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


def grounded(severity: str, name: str, coords, capital=False) -> str:
    label = f"{severity} {name.lower()}" if capital else f"{severity.lower()} {name.lower()}"
    return f"{REF_START}{label}{REF_END}{box_text(coords)}"


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


def describe_content(objects: list[tuple[str, tuple]], background: str = "") -> str:
    """The content sentence of a scene: its first four (description, box) objects, over its background."""
    parts = [o for o, _ in objects[:4]]
    listing = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    return f"The image shows {listing} over {background}." if background else f"The image shows {listing}."


def description_answer(content: str, distortions: list[dict], level: str) -> str:
    """The four-step assessment: content, grounded distortions, key distortions, conclusion."""
    lines = [content]
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


TYPE_QUESTION = "Which type of distortion appears in the image?"


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
        add("type", TYPE_QUESTION, d["distortion"], absent)
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

