"""The images of a release: each checked once, its stored size and EXIF orientation kept for the reports.

The model sees every image in its stored frame (``vida_eval.images``). The
ViDA boxes are right for it when they were annotated in that frame, which the
metadata's width and height tell: a tagged image whose metadata gives the
stored size was annotated as stored; one whose metadata gives the size turned
by its tag was annotated as displayed, and its boxes do not fit the pixels the
model sees. ``frame_report`` counts both and names examples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..images import header, rotated
from ..records import safe_relative_path

EXAMPLES = 5


@dataclass
class ImageInfo:
    width: int
    height: int
    orientation: int | None


class ImageCheck:
    """Existence and readability of images, each checked once; ``info[name]`` holds its header facts."""

    def __init__(self, folder: Path, verify: bool = True):
        self.folder, self.verify = folder, verify
        self.cache: dict[str, str | None] = {}
        self.info: dict[str, ImageInfo] = {}

    def problem(self, name: str) -> str | None:
        if name not in self.cache:
            self.cache[name] = self._check(name)
        return self.cache[name]

    def size(self, name: str) -> tuple[int, int]:
        info = self.info[name]
        return info.width, info.height

    def _check(self, name: str) -> str | None:
        if not safe_relative_path(name):
            return f"image path {name!r} escapes the image folder (refused)"
        path = self.folder / name
        if not path.is_file():
            return f"image {name!r} not found in {self.folder}"
        if not path.resolve().is_relative_to(self.folder.resolve()):
            return f"image {name!r} is a link to {path.resolve()}, outside {self.folder} (refused)"
        try:
            self.info[name] = ImageInfo(*header(path))
            if self.verify:
                decode(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure means unreadable
            return f"image {name!r} is unreadable ({_decoder_problem(e)})"
        return None


def decode(path: Path) -> None:
    """Decode every byte of the image (a JPEG at 1/8 scale: the same entropy-coded data, less work).

    ``Image.verify`` checks a header and a few structures only: a JPEG cut short passes it, and fails here.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()


def _decoder_problem(e: Exception) -> str:
    from PIL import Image

    if isinstance(e, Image.DecompressionBombError):
        return f"more pixels than a decoder should expand: {e}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def frame_report(images: ImageCheck, metadata: list | None) -> dict:
    """EXIF orientation tags of the images seen, and stored sizes against the metadata's width / height."""
    tags = Counter(i.orientation for i in images.info.values() if i.orientation not in (None, 1))
    report: dict = {"images": len(images.info), "exif_orientation_tags": {str(k): v for k, v in sorted(tags.items())},
                    "exif_rotated": sum(n for k, n in tags.items() if rotated(k))}
    if metadata is None:
        report["metadata_sizes"] = "no train_metadata.json"
        return report
    sized = [m for m in metadata if isinstance(m, dict) and isinstance(m.get("width"), int)
             and isinstance(m.get("height"), int) and m.get("image") in images.info]
    if not sized:
        report["metadata_sizes"] = "train_metadata.json gives no width / height"
        return report
    displayed, other = [], []
    for m in sized:
        info = images.info[m["image"]]
        if (m["width"], m["height"]) == (info.width, info.height):
            continue
        entry = f"{m['image']}: metadata {m['width']}x{m['height']}, stored {info.width}x{info.height}"
        if rotated(info.orientation) and (m["width"], m["height"]) == (info.height, info.width):
            displayed.append(entry + f", EXIF orientation {info.orientation}")
        else:
            other.append(entry)
    report["metadata_sizes"] = {
        "compared": len(sized), "match_stored": len(sized) - len(displayed) - len(other),
        "match_displayed_frame": len(displayed), "other_mismatch": len(other),
        "examples": (displayed + other)[:EXAMPLES],
    }
    return report


def frame_warnings(report: dict) -> list[str]:
    """One line per finding of ``frame_report`` worth a user's attention."""
    lines = []
    if report.get("exif_rotated"):
        lines.append(f"{report['exif_rotated']} images carry an EXIF orientation that turns them on display; "
                     "training and every eval backend use the stored frame")
    sizes = report.get("metadata_sizes")
    if isinstance(sizes, dict):
        if sizes["match_displayed_frame"]:
            lines.append(f"{sizes['match_displayed_frame']} images have metadata sizes of their DISPLAYED frame: "
                         "their boxes were annotated on the turned image, not on the pixels the model sees")
        if sizes["other_mismatch"]:
            lines.append(f"{sizes['other_mismatch']} images have a stored size unlike their metadata's")
        lines.extend(f"  e.g. {e}" for e in sizes["examples"])
    return lines
