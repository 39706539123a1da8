"""What a prepared folder's boxes mean, written beside its files and checked before training reads them.

``vida-eval data prepare --family F`` writes every box in F's convention
(``vida_eval.models.boxes``). For Qwen2.5-VL the numbers are pixels of the
image as training resizes it, so they hold for one recipe's pixel limits only.
``family.json`` records the family, its convention and, for pixel boxes, the
limits and resize factor they were computed with; ``vida-eval preflight`` and
``data prepare --recipe`` refuse a folder whose convention is not the recipe's
model's. Folders with no ``family.json`` hold ViDA's own 0..1000 boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_json
from ..models.boxes import text_to_model
from ..models.families import ABSOLUTE, DEFAULT, RELATIVE, Family
from ..parsing import BOX_START

FAMILY_FILE = "family.json"


class BoxConventionError(Exception):
    """A record whose boxes cannot be put in the family's convention; the message is the reason."""


def convention(family: Family, recipe=None, base: Path | None = None) -> dict:
    """What *family*'s boxes mean for *recipe* (a ``train.recipe.Recipe``; needed for pixel boxes)."""
    out = {"family": family.name, "boxes": family.boxes, "template": family.template}
    if family.boxes == ABSOLUTE:
        if recipe is None:
            raise ValueError(f"{family.title} boxes are pixels of the resized image: a recipe gives its limits")
        out.update(image_pixels=[recipe.image_min_pixels, recipe.image_max_pixels],
                   processor_pixels=list(recipe.processor_limits(base)), factor=family.factor)
    return out


def read_convention(folder: Path) -> dict:
    """The convention recorded in *folder*; ViDA's own (0..1000, as Qwen2-VL) when it records none."""
    path = Path(folder) / FAMILY_FILE
    if not path.is_file():
        return {"family": DEFAULT.name, "boxes": RELATIVE, "template": DEFAULT.template, "recorded": False}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {"family": "?", "boxes": "?", "error": f"{path}: not readable JSON ({e})"}
    return found if isinstance(found, dict) else {"family": "?", "boxes": "?", "error": f"{path}: not an object"}


def write_convention(folder: Path, conv: dict) -> Path:
    return write_json(Path(folder) / FAMILY_FILE, conv)


def convention_problem(found: dict, wanted: dict, where: str) -> str | None:
    """Why files of convention *found* (in *where*) cannot train a model that wants *wanted*, or None."""
    if "error" in found:
        return found["error"]
    recorded = "" if found.get("recorded", True) else " (no family.json: ViDA's own boxes)"
    if found.get("boxes") != wanted["boxes"]:
        return (f"{where}: prepared for {found.get('family')} ({found.get('boxes')} boxes{recorded}), but the recipe's "
                f"model is {wanted['family']} ({wanted['boxes']} boxes): prepare it again with "
                f"--family {wanted['family']} --recipe RECIPE into its own folder")
    if wanted["boxes"] == ABSOLUTE:
        for key in ("image_pixels", "processor_pixels", "factor"):
            if found.get(key) != wanted[key]:
                return (f"{where}: its pixel boxes were computed for {key} {found.get(key)}, the recipe resizes with "
                        f"{wanted[key]}: prepare it again with this recipe")
    return None


class RecordBoxes:
    """Puts a prepared record's boxes (all turns: region questions carry them too) in a family's convention."""

    def __init__(self, family: Family, recipe, base: Path | None = None):
        self.family, self.recipe, self.base = family, recipe, base
        self.convention = convention(family, recipe, base)

    def __call__(self, record: dict, size_of) -> dict:
        """*record* converted; *size_of(name)* gives an image's stored (width, height)."""
        if not self.family.converts_boxes:
            return record
        turns = record["conversations"]
        if not any(BOX_START in t["value"] for t in turns):
            return record
        if len(record["images"]) != 1:
            raise BoxConventionError(f"boxes in a record of {len(record['images'])} images: {self.family.title} "
                                     "boxes are pixels of one image")
        frame = self.recipe.frame(*size_of(record["images"][0]), self.base)
        record["conversations"] = [dict(t, value=text_to_model(t["value"], self.family, frame)) for t in turns]
        return record


def dataset_folders(recipe, base: Path | None = None) -> list[tuple[str, Path]]:
    """(dataset name, folder of its file) of each dataset the recipe trains on that its dataset_info.json
    registers as a local file."""
    base = Path(base or ".")
    dataset_dir = base / str(recipe.args.get("dataset_dir", "data"))
    try:
        info = json.loads((dataset_dir / "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = recipe.args.get("dataset") or []
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    out = []
    for n in names:
        entry = info.get(n)
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str):
            out.append((n, (dataset_dir / entry["file_name"]).parent))
    return out


def recipe_data_problems(recipe, base: Path | None = None) -> list[str]:
    """Why the recipe's prepared datasets do not match its model's box convention (empty when they do)."""
    family = recipe.family(base)
    wanted = convention(family, recipe, base)
    problems = []
    for name, folder in dataset_folders(recipe, base):
        if folder.is_dir():
            why = convention_problem(read_convention(folder), wanted, f"dataset {name} ({folder})")
            if why:
                problems.append(why)
    return problems
