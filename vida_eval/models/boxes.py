"""Boxes between ViDA's convention and a model family's, in grounded text. Pure functions, no I/O.

ViDA (and Qwen2-VL, Qwen3-VL) write ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
with integers relative to the image, 0..1000. Qwen2.5-VL reads and writes the
same text with absolute pixels of the image the processor made (sides resized
to multiples of 28 within its pixel limits), so for a frame of W x H pixels:

    model:  X = floor(x * W / 1000 + 1/2),   Y = floor(y * H / 1000 + 1/2)
    ViDA:   x = floor(X * 1000 / W + 1/2),   y = floor(Y * 1000 / H + 1/2)

A round trip moves a coordinate by at most 1/2 + 500 / W units (the model's
grid is coarser than ViDA's when W < 1000): at most 1 unit when W >= 1000.
"""

from __future__ import annotations

import math
import re

from ..parsing import BOX_END, BOX_START
from .families import Family

# A box as grounded text writes it; signed, so that a box the data tools have not clamped yet is read too.
BOX_TEXT = re.compile(re.escape(BOX_START) + r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*,\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"
                  + re.escape(BOX_END))

Frame = tuple[int, int]  # (width, height) in pixels of the image the model sees


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def box_to_model(box: list[int], frame: Frame) -> list[int]:
    """A 0..1000 box in pixels of *frame*."""
    w, h = frame
    x1, y1, x2, y2 = box
    return [_round(x1 * w / 1000), _round(y1 * h / 1000), _round(x2 * w / 1000), _round(y2 * h / 1000)]


def box_from_model(box: list[int], frame: Frame) -> list[int]:
    """A box in pixels of *frame* as 0..1000 integers."""
    w, h = frame
    x1, y1, x2, y2 = box
    return [_round(x1 * 1000 / w), _round(y1 * 1000 / h), _round(x2 * 1000 / w), _round(y2 * 1000 / h)]


def round_trip_bound(frame: Frame) -> float:
    """The most a coordinate can move through box_to_model then box_from_model."""
    return 0.5 + 500 / min(frame)


def box_text(coords) -> str:
    """``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``."""
    x1, y1, x2, y2 = coords
    return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"


def rewrite_boxes(text: str, convert) -> str:
    """*text* with each box written again as ``convert([x1, y1, x2, y2])`` returns it."""
    return BOX_TEXT.sub(lambda m: box_text(convert([int(v) for v in m.groups()])), text)


def text_from_frame(text: str, frame: Frame) -> str:
    """*text*'s boxes, pixels of *frame*, as 0..1000 integers."""
    return rewrite_boxes(text, lambda b: box_from_model(b, frame)) if BOX_START in text else text


def text_to_model(text: str, family: Family, frame: Frame | None) -> str:
    """*text* with every box in *family*'s convention for an image the model sees as *frame*."""
    if not family.converts_boxes or BOX_START not in text:
        return text
    if frame is None:
        raise ValueError(f"{family.title} boxes need the image's size as the model sees it")
    return rewrite_boxes(text, lambda b: box_to_model(b, frame))
