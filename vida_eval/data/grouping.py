"""``prepare --group-by-image K``: the questions about one image as multi-turn conversations of at most K turns.

LLaMA-Factory trains every assistant turn of a conversation and encodes its image once, so a conversation of
K questions pays for the image once instead of K times. It is an approximation of the one-question samples:
a later turn sees the earlier questions and answers. Only records with the same image and the same system
prompt can share a conversation (the system prompt opens it), so the nine subsets fall into four kinds of
conversation, and each kind orders its turns so that what a turn could copy from earlier answers is least:

- grounding system prompt: region perception, then reference grounding, then distortion assessment, then
  detection last. The detection answer lists every box of the image, which would give away each region's and
  each reference's boxes; a reference answer gives away the boxes a later region question asks about.
- default system prompt: the multiple-choice questions, then the short question-answer, then the brief
  assessment last. The brief assessment and the answer name the image's distortions, severities and places and
  its quality level, which would give away the questions about type, severity, position and significance.
  Still, later multiple-choice turns see earlier ones' letters, and the last two turns see what the
  multiple-choice answers established.
- the detailed assessment (its own system prompt) and the quality score (its own) stay one question each.

With *max_choices* M (``--choices-per-conversation M``) a conversation holds at most M multiple-choice turns,
first, as at evaluation, where each comes alone after the image; the other turns of the image fill the
conversations after them. M=1 stops one multiple-choice answer from giving away the next (a severity question
after a type question about the same distortion) at the price of one conversation per multiple-choice question.

Conversations longer than the recipe's cutoff_len (when a recipe is given) are split until each fits, so
LLaMA-Factory never drops a turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from ..files import atomic_write

CHOICES = "vida_p_mcq"  # the multiple-choice subset (Perception Accuracy)
TURN_ORDER = ("vida_g_reg_perception", "vida_g_ref_grounding", "vida_d_dist_assess", "vida_g_dist_detect",
              "vida_p_mcq", "vida_p_qa", "vida_d_brief_assess", "vida_d_assess", "vida_p_score")
GROUPED_DATASET = "vida_grouped"
IMAGE = "<image>"


def mergeable(rec: dict) -> bool:
    """A one-question record whose question opens with its one image."""
    turns = rec.get("conversations") or []
    return (len(turns) == 2 and len(rec.get("images") or []) == 1 and turns[0]["value"].count(IMAGE) == 1
            and turns[0]["value"].startswith(IMAGE))


def conversation(records: list[dict]) -> dict:
    """One conversation of *records*' turns, in order; the image stays in the first question only."""
    turns = []
    for k, rec in enumerate(records):
        human, answer = rec["conversations"]
        question = human["value"] if k == 0 else human["value"][len(IMAGE):].lstrip("\n")
        turns += [{"from": "human", "value": question}, answer]
    out = {"id": "+".join(r["id"] for r in records), "conversations": turns, "images": records[0]["images"]}
    if "system" in records[0]:
        out["system"] = records[0]["system"]
    return out


def chunk_turns(members: list[tuple[str, dict]], max_turns: int, max_choices: int = 0) -> list[list[dict]]:
    """*members* ((subset, record) in TURN_ORDER) cut into conversations of at most *max_turns* turns; with
    *max_choices* M, at most M multiple-choice turns each, first, and the other turns dealt in order after them."""
    choices = [rec for name, rec in members if max_choices and name == CHOICES]
    rest = [rec for name, rec in members if not (max_choices and name == CHOICES)]
    step = min(max_choices, max_turns) or max_turns
    chunks = [choices[i:i + step] for i in range(0, len(choices), step)]
    room = sum(max_turns - len(c) for c in chunks)
    k = 0
    for rec in rest[:room]:  # dealt round the conversations so that they stay of like length
        while len(chunks[k % len(chunks)]) >= max_turns:
            k += 1
        chunks[k % len(chunks)].append(rec)
        k += 1
    extra = rest[room:]
    return chunks + [extra[i:i + max_turns] for i in range(0, len(extra), max_turns)]


def group_by_image(records: dict[str, Iterable[dict]], max_turns: int,
                   fits: Callable[[dict], bool] | None = None, max_choices: int = 0) -> tuple[list[dict], dict]:
    """Conversations of at most *max_turns* turns from *records* (subset name -> its records), each one image and
    one system prompt, turns in TURN_ORDER (with *max_choices* M, at most M multiple-choice turns, first); split
    further until *fits* accepts each. Returns (conversations, counts)."""
    groups: dict[tuple, list[tuple[str, dict]]] = {}
    alone = []
    for name in TURN_ORDER:
        for rec in records.get(name, ()):
            if mergeable(rec):
                groups.setdefault((rec["images"][0], rec.get("system")), []).append((name, rec))
            else:
                alone.append(rec)
    out, split = list(alone), 0
    for members in groups.values():
        chunks = chunk_turns(members, max_turns, max_choices)
        while chunks:
            chunk = chunks.pop()
            conv = conversation(chunk)
            if fits is None or len(chunk) == 1 or fits(conv):
                out.append(conv)
            else:
                split += 1
                half = (len(chunk) + 1) // 2
                chunks += [chunk[half:], chunk[:half]]
    n_in = sum(len(v) for v in groups.values()) + len(alone)
    return out, {"records": n_in, "conversations": len(out), "max_turns": max_turns,
                 "max_choices": max_choices, "split_to_fit_cutoff": split}


def write_grouped(out: Path, subsets: Iterable[str], max_turns: int, fits=None, max_choices: int = 0) -> dict:
    """Read the prepared *subsets* files of *out*, write ``vida_grouped.jsonl`` beside them; returns the counts."""
    records = {}
    for name in subsets:
        path = out / f"{name}.jsonl"
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                records[name] = [json.loads(line) for line in f]
    convs, counts = group_by_image(records, max_turns, fits, max_choices)
    with atomic_write(out / f"{GROUPED_DATASET}.jsonl") as f:
        f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in convs)
    return counts
