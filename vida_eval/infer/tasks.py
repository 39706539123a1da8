"""ViDA-Bench tasks: each builds requests from the bench release, and turns outputs into prediction records.

A task is a prompt builder, a parser and the submission file it feeds, as in
the official evaluation: perception (MCQ), grounding (region perception and
distortion detection), description, and quality scoring (Q-Align).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import prompts
from ..data.layout import BENCH_RELEASE_FIELDS
from ..parsing import parse_choice, parse_description, parse_grounding
from ..records import InputError, read_json_list, safe_relative_path
from ..scoring import DETECTION, REGION

TASKS = ("perception", "grounding", "description", "scoring")
OUTPUT_FILE = {t: f"{t}.json" for t in TASKS}
PIXEL_CHOICES = ("official", "train")


@dataclass
class Request:
    """One model call: an image, a system prompt, a user text, and how to decode."""

    task: str
    record: dict  # the release record the answer belongs to
    image: Path
    user: str
    system: str | None
    max_new_tokens: int = 0  # 0: score the next token instead of generating
    min_pixels: int | None = None
    max_pixels: int | None = None
    assistant_prefix: str | None = None
    fixed_length: bool = False  # generate exactly max_new_tokens (benchmarks: the end-of-turn token is ignored)
    # (width, height) the model sees when its family writes boxes in pixels (Qwen2.5-VL): the user text is in its
    # convention and the answer's boxes are put back in ViDA's 0..1000 (``in_family``).
    frame: tuple[int, int] | None = None

    @property
    def image_size_kwargs(self) -> dict | None:
        """The request's pixel limits as the image processor's call-time ``size`` (None: the model's defaults).

        ``size`` rather than ``min_pixels``/``max_pixels``: vLLM hands the latter to a new processor built for
        each setting (12 s a setting on 2 cores, on every run), and transformers deprecates them at call time.
        """
        edges = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        edges = {k: v for k, v in edges.items() if v}
        return {"size": edges} if edges else None

    @property
    def uid(self) -> str:
        """Unique within a task: grounding ids repeat across its two question kinds."""
        kind = self.record.get("question_type", "")
        return f"{kind}:{self.record['id']}" if kind else str(self.record["id"])

    def messages(self) -> list[dict]:
        """Chat messages in the transformers / OpenAI shape (image first, then the text)."""
        msgs = []
        if self.system is not None:
            msgs.append({"role": "system", "content": self.system})
        msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.user}]})
        return msgs


def _load(path: Path) -> list[dict]:
    """The records of a bench release file; InputError naming the file and record when one cannot be asked."""
    path = Path(path)
    records = read_json_list(path)
    for i, r in enumerate(records):
        where = f"{path} record {i}"
        if not isinstance(r, dict):
            raise InputError(f"{where}: {type(r).__name__}, not an object")
        missing = [k for k in BENCH_RELEASE_FIELDS[path.name] if k not in r]
        if missing:
            raise InputError(f"{where} (id {r.get('id')!r}): no {', '.join(missing)}")
        if not isinstance(r["image"], str) or not safe_relative_path(r["image"]):
            raise InputError(f"{where} (id {r['id']!r}): image {r['image']!r} is not a file name in the images folder")
        if not isinstance(r.get("question", ""), str):
            raise InputError(f"{where} (id {r['id']!r}): question is not text")
        if "candidates" in r and not (isinstance(r["candidates"], list)
                                      and all(isinstance(c, str) for c in r["candidates"])):
            raise InputError(f"{where} (id {r['id']!r}): candidates are not a list of texts")
    return records


def perception_requests(release: Path, images: Path) -> list[Request]:
    return [
        Request("perception", q, images / q["image"], prompts.perception_question(q["question"], q["candidates"]),
                prompts.PERCEPTION_SYSTEM, prompts.PERCEPTION_MAX_NEW_TOKENS,
                prompts.PERCEPTION_MIN_PIXELS, prompts.PERCEPTION_MAX_PIXELS)
        for q in _load(release / "mcq.json")
    ]


def grounding_requests(release: Path, images: Path) -> list[Request]:
    """Distortion detection for every bench image, then the region questions.

    Detection answers come first in grounding.json: the official Distortion mAP
    pools both kinds in file order, and a detection answer holds the image's
    full boxes.
    """
    detection = [
        Request("grounding", dict(b, question=prompts.DETECTION_QUESTION, question_type=DETECTION),
                images / b["image"], prompts.DETECTION_QUESTION, prompts.GROUNDING_SYSTEM,
                prompts.GROUNDING_MAX_NEW_TOKENS)
        for b in _load(release / "benchmark.json")
    ]
    region = [
        Request("grounding", dict(q, question_type=REGION), images / q["image"], q["question"],
                prompts.GROUNDING_SYSTEM, prompts.GROUNDING_MAX_NEW_TOKENS)
        for q in _load(release / "reg-p_ques.json")
    ]
    return detection + region


def description_requests(release: Path, images: Path) -> list[Request]:
    return [
        Request("description", b, images / b["image"], prompts.DESCRIPTION_USER, prompts.DESCRIPTION_SYSTEM,
                prompts.DESCRIPTION_MAX_NEW_TOKENS)
        for b in _load(release / "benchmark.json")
    ]


def scoring_requests(release: Path, images: Path) -> list[Request]:
    return [
        Request("scoring", b, images / b["image"], prompts.SCORING_USER, prompts.SCORING_SYSTEM, 0,
                assistant_prefix=prompts.SCORING_ASSISTANT_PREFIX)
        for b in _load(release / "benchmark.json")
    ]


def with_pixels(requests: list[Request], pixels: str = "official", max_pixels: int | None = None) -> list[Request]:
    """*requests* at a pixel setting: "official" leaves each task's own (perception 4..4096 tokens, the others the
    processor's default), "train" gives every request the recipe's 256..8,192 tokens; *max_pixels* then caps one
    task (its min_pixels kept, the processor's default where the task has none)."""
    from dataclasses import replace

    from ..images import QWEN2_VL_MIN_PIXELS, RECIPE_MAX_PIXELS, RECIPE_MIN_PIXELS

    if pixels == "train":
        requests = [replace(r, min_pixels=RECIPE_MIN_PIXELS, max_pixels=RECIPE_MAX_PIXELS) for r in requests]
    elif pixels != "official":
        raise ValueError(f"pixels {pixels!r}: choose from {', '.join(PIXEL_CHOICES)}")
    if max_pixels is not None:
        requests = [replace(r, min_pixels=min(r.min_pixels or QWEN2_VL_MIN_PIXELS, max_pixels), max_pixels=max_pixels)
                    for r in requests]
    return requests


def in_family(requests: list[Request], family, limits: tuple[int, int]) -> list[Request]:
    """*requests* in a model family's box convention (``vida_eval.models.boxes``): for a family that writes pixels,
    each request's ``frame`` is its image as the processor resizes it at the request's pixel limits (*limits*, the
    processor's own, where it sets none), and boxes in its user text (region questions) are put in that frame.
    A request whose image cannot be read is left as it is: answering it reports the image."""
    from dataclasses import replace

    from ..images import header, smart_resize
    from ..models.boxes import text_to_model

    if not family.converts_boxes:
        return requests
    sizes: dict[Path, tuple[int, int] | None] = {}
    out = []
    for r in requests:
        if r.image not in sizes:
            try:
                sizes[r.image] = header(r.image)[:2]
            except (OSError, ValueError):
                sizes[r.image] = None
        size = sizes[r.image]
        if size is None:
            out.append(r)
            continue
        frame = smart_resize(*size, r.min_pixels or limits[0], r.max_pixels or limits[1], family.factor)
        out.append(replace(r, frame=frame, user=text_to_model(r.user, family, frame)))
    return out


BUILDERS: dict[str, Callable[[Path, Path], list[Request]]] = {
    "perception": perception_requests,
    "grounding": grounding_requests,
    "description": description_requests,
    "scoring": scoring_requests,
}


def expected_mos(probs: dict[str, float]) -> float:
    """MOS = sum over levels of p(level) * weight(level), excellent 5 ... bad 1."""
    weights = dict(zip(prompts.SCORING_LEVEL_TOKENS, prompts.SCORING_LEVEL_WEIGHTS))
    return float(sum(p * weights[k] for k, p in probs.items()))


def to_prediction(req: Request, output: dict) -> dict:
    """The submission record of one request: the release record plus the model's fields."""
    rec = dict(req.record)
    if "error" in output:
        rec["error"] = output["error"]
    if req.task == "scoring":
        probs = output.get("probs")
        if probs:
            rec["probs"] = probs
            rec["pred_mos"] = expected_mos(probs)
        else:
            rec["pred_mos"] = None
        return rec
    text = output.get("text", "")
    if req.frame is not None:
        from ..models.boxes import text_from_frame

        model_text, text = text, text_from_frame(text, req.frame)
        if text != model_text:
            rec["model_answer"] = model_text  # as the model wrote it, in pixels of its frame
    rec["pred_ans"] = text
    if req.task == "perception":
        rec["pred_option"] = parse_choice(text, rec["candidates"]).letter
    elif req.task == "grounding":
        rec["distortions"] = parse_grounding(text)
    else:
        rec.update(parse_description(text))
    return rec
