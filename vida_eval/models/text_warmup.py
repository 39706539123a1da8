"""Teach a tiny model's random language model to answer a multiple-choice question with the named candidate's letter.

A perception question asks the model to find, among lettered candidates, the one that names what it sees and to
answer with that candidate's letter. Trained from random weights on the image questions alone, the small model's
perception scores stay at the level of the candidates' priors. bench/option_pointing_probe.py, with the answer
written in the text, measured the second half on its own on one GPU: the small model stays at chance for 11,000
steps of batch 64 at lr 1e-3 and reaches 0.98 held-out accuracy in 2,000 steps at lr 3e-4 (bench/RESULTS.md).
``vida-eval tiny-textwarmup`` trains that step before the recipe, from the multiple-choice records of a prepared
set (``data prepare``): each question is asked with the image replaced by a sentence naming the right candidate,

    "<image>\\n{question}\\nA. ...\\nB. ..."   ->   "The image shows: {right candidate}.\\n{question}\\nA. ...\\nB. ..."

in the model's own chat template, and the whole language model trains under cross-entropy on the answer's first
token (the letter), as ``answer_logits_only`` trains the recipe. The sentence stands where the image's tokens
will: what is learnt is to match what precedes the question against the candidates and to copy the matched
one's letter, which the recipe then needs from the image. No image is read, the vision tower and its merger are
written as they came (only weights that a text forward uses change), and a share of the records is held out:
held-out accuracy with the sentence (1.0: learnt) and without it (the candidates' priors: what the records
alone give away).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import prompts
from ..data.readers import ReadError, iter_jsonl
from ..records import InputError
from .warmup import add_training_args, held_out_problem, loss_report, optimise, split_held_out, write_weights

HINT = "The image shows: {candidate}."
_OPTION = re.compile(r"^([A-Z])\. (.+)$")
_LETTER_ANSWER = re.compile(r"^([A-Z])\.?$")


@dataclass(frozen=True)
class TextWarmupArgs:
    steps: int = 2500
    batch: int = 64
    lr: float = 3e-4
    warmup_steps: int = 100
    held_out: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class Question:
    system: str | None
    text: str            # the user's text after the image: question, lettered candidates, instruction
    answer: int          # index of the right candidate
    candidates: tuple[str, ...]


def multiple_choice_questions(path: Path) -> list[Question]:
    """The single-turn multiple-choice records of a prepared set (sharegpt jsonl): an image, a user text with
    'A. ...' candidate lines, and a letter for an answer. Other records are skipped; a multiple-choice record whose
    letter names no candidate is an InputError naming the file and line."""
    out = []
    try:
        records = list(iter_jsonl(path))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    for n, rec in records:
        if isinstance(rec, ReadError):
            raise InputError(f"{path} line {n}: not valid JSON ({rec})")
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list) or len(turns) != 2 or not all(isinstance(t, dict) for t in turns):
            continue
        user, answer = str(turns[0].get("value", "")), str(turns[1].get("value", "")).strip()
        letter = _LETTER_ANSWER.match(answer)
        if not letter or not user.startswith("<image>\n"):
            continue
        text = user[len("<image>\n"):]
        candidates = tuple(m.group(2) for m in map(_OPTION.match, text.split("\n")) if m)
        if not candidates:
            continue
        k = prompts.OPTION_LETTERS.index(letter.group(1))
        if k >= len(candidates):
            raise InputError(f"{path} line {n} (id {rec.get('id', '?')!r}): the answer {answer!r} names no candidate "
                             f"(the question has {len(candidates)})")
        out.append(Question(rec.get("system"), text, k, candidates))
    if not out:
        raise InputError(f"{path}: no multiple-choice records (an image, 'A. ...' candidate lines, a letter answer)")
    return out


def prompt_text(tokenizer, q: Question, hint: bool) -> str:
    user = (HINT.format(candidate=q.candidates[q.answer]) + "\n" if hint else "") + q.text
    messages = ([{"role": "system", "content": q.system}] if q.system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(tokenizer, questions: list[Question], hint: bool) -> list[list[int]]:
    texts = [prompt_text(tokenizer, q, hint) for q in questions]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def padded_batch(rows: list[list[int]], pad: int, device):
    """(ids, attention mask) of token rows padded on the right to the longest."""
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def answer_logits(model, ids, mask):
    """The vocabulary's logits at each prompt's last position (where the answer's first token is predicted)."""
    import torch

    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    return model.lm_head(hidden[torch.arange(len(ids), device=ids.device), mask.sum(1) - 1])


def text_warm_up(model_dir: Path, data: Path, out: Path, args: TextWarmupArgs = TextWarmupArgs(), log=print) -> dict:
    """Train the language model of the model in *model_dir* to answer *data*'s multiple-choice questions with the
    letter of the candidate a sentence before them names; write the model to *out*. Returns the report."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    start = time.perf_counter()
    questions = multiple_choice_questions(data)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    letters = [tokenizer.encode(c, add_special_tokens=False)[0] for c in prompts.OPTION_LETTERS[:26]]
    rng = np.random.default_rng(args.seed)
    held, train = split_held_out(questions, args.held_out, rng)
    train_ids = encode(tokenizer, train, hint=True)
    train_y = np.array([letters[q.answer] for q in train])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.train()
    prepared = time.perf_counter() - start

    def next_loss(step):
        pick = rng.choice(len(train), min(args.batch, len(train)), replace=False)
        ids, mask = padded_batch([train_ids[i] for i in pick], pad, device)
        return torch.nn.functional.cross_entropy(answer_logits(model, ids, mask),
                                                 torch.as_tensor(train_y[pick], device=device))

    # Constant after the warm-up: the probe learnt the step at a constant rate, in a sudden drop of the loss.
    losses = optimise([p for name, p in model.named_parameters() if "visual" not in name],
                      lambda s: min(1.0, (s + 1) / max(1, args.warmup_steps)), args.steps, args.lr, next_loss, log)
    trained = time.perf_counter() - start - prepared

    accuracy = {}
    if held:
        model.eval()
        truth = np.array([letters[q.answer] for q in held])
        for hint in (True, False):
            rows, pred = encode(tokenizer, held, hint), []
            with torch.no_grad():
                for i in range(0, len(rows), args.batch):
                    pred.append(answer_logits(model, *padded_batch(rows[i:i + args.batch], pad, device)).argmax(-1).cpu())
            accuracy["with_sentence" if hint else "without_sentence"] = float(np.mean(torch.cat(pred).numpy() == truth))
        accuracy["chance"] = float(np.mean([1 / len(q.candidates) for q in held]))

    model.to("cpu")
    write_weights(model, model_dir, out)
    report = {"model": str(model_dir), "data": str(data), "questions": len(questions), "held_out": len(held),
              "args": args.__dict__, **loss_report(losses, args.steps), "held_out_accuracy": accuracy,
              "prepare_seconds": round(prepared, 1), "train_seconds": round(trained, 1), "device": device}
    (out / "vida_text_warmup.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def register(sub) -> None:
    from ..cli_args import existing_dir

    sp = sub.add_parser("tiny-textwarmup", help="train a tiny model's language model to answer a multiple-choice "
                                                "question with the letter of the candidate named before it")
    sp.add_argument("model", type=existing_dir, help="a tiny model folder (vida-eval tiny-model or tiny-warmup)")
    sp.add_argument("--data", type=Path, required=True,
                    help="a prepared set's records (data prepare), e.g. data/vida_synth/vida_combined.jsonl")
    sp.add_argument("--out", type=Path, required=True, help="where the model with the trained language model goes")
    add_training_args(sp, TextWarmupArgs, "questions", "the accuracy")

    def run(args) -> int:
        if problem := held_out_problem(args, "questions"):
            raise InputError(problem)
        if not args.data.is_file():
            raise InputError(f"--data {args.data}: no such file")
        targs = TextWarmupArgs(steps=args.steps, batch=args.batch, lr=args.lr, held_out=args.held_out, seed=args.seed)
        report = text_warm_up(Path(args.model), args.data, args.out, targs)
        print(f"{report['questions']} multiple-choice questions, {args.steps} steps in {report['train_seconds']} s on "
              f"{report['device']}: loss {report['first_loss']:.4f} -> {report['last_loss']:.4f}")
        acc = report["held_out_accuracy"]
        if acc:
            print(f"held-out accuracy ({report['held_out']} questions): {acc['with_sentence']:.3f} with the sentence "
                  f"naming the answer, {acc['without_sentence']:.3f} without it (chance {acc['chance']:.3f})")
        print(f"written to {args.out}")
        return 0

    sp.set_defaults(func=run)
