"""Turning raw model answers into the official prediction fields.

Pure functions, no I/O. Grounded text uses Qwen2-VL's special tokens:
``<|object_ref_start|>Moderate low clarity<|object_ref_end|><|box_start|>(199,10),(922,320)<|box_end|>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .prompts import OPTION_LETTERS
from .vocab import canonical_severity

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"

# ---------------------------------------------------------------- grounding

# A block header 'Type:' at the start of a line; the reference may follow on
# the same line or on the next ones. One greedy run of a class without ':' (the
# name is stripped afterwards): a lazy name between optional blanks backtracks
# cubically on a long line of spaces, and a model's answer can be 8,800 of them.
_HEADER = re.compile(r"^([^\n<:]+):", re.MULTILINE)
_REFERENCE = re.compile(
    re.escape(REF_START) + r"(.*?)" + re.escape(REF_END)
    + r"((?:\s*" + re.escape(BOX_START) + r".*?" + re.escape(BOX_END) + r")*)",
    re.DOTALL,
)
_BOX = re.compile(
    re.escape(BOX_START)
    + r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)"
    + re.escape(BOX_END)
)


def parse_boxes(text: str) -> list[list[int]]:
    """Every ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in *text*, in order."""
    return [[int(v) for v in m.groups()] for m in _BOX.finditer(text)]


def _split_reference(ref: str) -> tuple[str, str]:
    """'minor low clarity' -> ('Slight', 'low clarity'): the severity in its canonical spelling."""
    words = ref.strip().split(None, 1)
    severity = canonical_severity(words[0]) if words else None
    if severity:
        return severity, (words[1] if len(words) > 1 else "")
    return "", ref.strip()


def parse_grounding(answer: str) -> list[dict]:
    """Boxes of a grounding answer (region perception or distortion detection).

    The answer is a sequence of blocks: a line ``Type:``, then one or more
    severity references, each followed by one or more boxes. Every box takes
    the type of ITS block and the severity of ITS reference (a block may hold
    several severity references: all their boxes are kept). A reference outside
    any block takes its type from its own text. "No distortion affects this
    region." yields no box.

    Returns ``[{"distortion", "severity", "coordinates": [x1, y1, x2, y2]}]``
    in answer order.
    """
    headers = [(m.start(), m.end(), m.group(1).strip()) for m in _HEADER.finditer(answer)]
    out: list[dict] = []
    for ref in _REFERENCE.finditer(answer):
        severity, ref_type = _split_reference(ref.group(1))
        block_type = None
        for start, end, name in headers:
            if end <= ref.start():
                block_type = name
            else:
                break
        distortion = block_type or (ref_type[:1].upper() + ref_type[1:])
        for box in parse_boxes(ref.group(2)):
            out.append({"distortion": distortion, "severity": severity, "coordinates": box})
    return out


# -------------------------------------------------------------- description

_GROUNDED = (
    re.escape(REF_START) + r"(\w+) ([^<]+)" + re.escape(REF_END)
    + re.escape(BOX_START) + r"\((\d+),(\d+)\),\((\d+),(\d+)\)" + re.escape(BOX_END)
)
_COUNTED_MENTION = re.compile(r"There is (?:one|two|three|\d+) " + _GROUNDED)
_MENTION = re.compile(_GROUNDED)
_QUALITY = re.compile(r"the quality of the image is (\w+)", re.IGNORECASE)


def _mentions(text: str, pattern: re.Pattern, lower_severity: bool, seen: set, out: list) -> None:
    for m in pattern.finditer(text):
        severity = m.group(1).lower() if lower_severity else m.group(1)
        distortion = m.group(2).strip()
        box = [int(v) for v in m.groups()[2:]]
        key = (distortion, severity, *box)
        if key not in seen:
            seen.add(key)
            out.append({"distortion": distortion, "severity": severity, "coordinates": box})


def description_distortions(answer: str) -> list[dict]:
    """All grounded mentions of a description, de-duplicated, as the official extraction lists them.

    Mentions introduced by "There is one|two|three|N" come first with the
    severity as written; then every grounded mention in text order with the
    severity lower-cased. A mention is (type, severity, first box); an
    identical one is kept once. Only the first box after a reference counts.
    """
    seen: set = set()
    out: list[dict] = []
    _mentions(answer, _COUNTED_MENTION, False, seen, out)
    _mentions(answer, _MENTION, True, seen, out)
    return out


def description_key_distortions(answer: str) -> list[dict]:
    """Grounded mentions in the first sentence (up to the first '.') of the second-to-last line."""
    lines = answer.split("\n")
    if len(lines) < 2:
        return []
    first_sentence = lines[-2].strip().split(".")[0].strip()
    seen: set = set()
    out: list[dict] = []
    _mentions(first_sentence, _MENTION, True, seen, out)
    return out


def description_quality(answer: str) -> str:
    """The word after 'the quality of the image is' in the last line, lower-cased, else 'unknown'."""
    m = _QUALITY.search(answer.split("\n")[-1].strip())
    return m.group(1).lower() if m else "unknown"


def parse_description(answer: str) -> dict:
    """``{"all_distortions", "key_distortions", "image_quality"}`` of a description answer."""
    return {
        "all_distortions": description_distortions(answer),
        "key_distortions": description_key_distortions(answer),
        "image_quality": description_quality(answer),
    }


# -------------------------------------------------------------------- MCQ

@dataclass(frozen=True)
class Choice:
    """A parsed MCQ answer: the option letter and its candidate, or the reason it has none."""

    letter: str | None
    candidate: str | None
    problem: str | None = None


_LEADING_LETTER = re.compile(r"^[\(\[\s]*([A-Za-z])\s*(?:[\.\):\],]|$|\s)")
_STATED_LETTER = re.compile(r"\b(?:answer|option|choice)\s*(?:is)?\s*[:\-]?\s*[\(\[]?([A-Za-z])\b", re.IGNORECASE)
_SPECIAL = re.compile(r"<\|[a-z_]+\|>")


def parse_choice(answer: object, candidates: list) -> Choice:
    """The option an MCQ answer picks.

    Accepts "B", "B.", " b) text", "(B)", "The answer is B", or the text of a
    candidate itself. Letters beyond the number of candidates are refused.
    """
    if not isinstance(answer, str):
        return Choice(None, None, f"answer is {type(answer).__name__}, not text")
    text = _SPECIAL.sub("", answer).strip()
    if not text:
        return Choice(None, None, "empty answer")
    n = len(candidates)
    for pattern in (_LEADING_LETTER, _STATED_LETTER):
        m = pattern.search(text) if pattern is _STATED_LETTER else pattern.match(text)
        if m:
            index = ord(m.group(1).upper()) - ord("A")
            if index < n:
                return Choice(OPTION_LETTERS[index], candidates[index])
            return Choice(None, None, f"option {m.group(1).upper()} but only {n} candidates")
    bare = text.rstrip(".").strip().lower()
    for i, c in enumerate(candidates):
        if isinstance(c, str) and c.strip().lower() == bare:
            return Choice(OPTION_LETTERS[i], c)
    return Choice(None, None, f"no option letter in {text[:40]!r}")
