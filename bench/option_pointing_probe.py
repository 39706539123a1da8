"""Can a tiny model's language model learn to answer a multiple-choice question with the right option's letter?

The perception questions ask the model to find, among four lettered candidates, the one that names what it sees,
and to answer with that candidate's letter. This probe takes the image out: the type question of the bench
("Which type of distortion appears in the image?", the present type and three absent ones in a random order),
asked in the chat template of a model the tiny-model builder makes, with the answer written in the text before
it, and the whole network trains on the letter alone (cross-entropy over the vocabulary at the answer's first
token, as ``answer_logits_only`` trains). The model is the preset's language model (width, depth, heads) with
its vocabulary cut to the token ids these prompts use (the real tokenizer's ids, renumbered): the 151,936-row
embedding would cost a CPU about a second a step and changes nothing in how attention finds a candidate.
Conditions, side by side on the same draws:

- ``said``: "The image shows <type>." precedes the question: the letter follows from the text, so a model that
  can match a word to a candidate and copy that candidate's letter reaches 1.0;
- ``letter``: "The answer is <letter>." precedes the question: the letter is in the text to copy, no candidate
  needs reading; the check that the network, the loss and the letter's position can learn at all;
- ``silent``: no such sentence: nothing tells the candidates apart, so held-out accuracy stays at chance (0.25),
  the check that the probe leaks no answer.

Printed: held-out accuracy every --every steps and the first step each condition reaches 0.9. Against the
learning proof's schedule it tells whether picking a letter by the candidates' words is learnt in the proof's
budget when the answer is in the text.

    python bench/option_pointing_probe.py --preset small --steps 1500 --batch 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval import prompts
from vida_eval.data.synth_texts import TYPE_QUESTION
from vida_eval.models.text_warmup import answer_logits, padded_batch
from vida_eval.models.tiny import PRESETS, build_tiny_model
from vida_eval.vocab import DISTORTION_TYPES

CONDITIONS = ("said", "letter", "silent")


def draw(rng: np.random.Generator) -> tuple[str, list[str], int]:
    """(present type, four candidates in a random order, index of the present one), as the bench deals them."""
    present = DISTORTION_TYPES[int(rng.integers(len(DISTORTION_TYPES)))]
    absent = [t for t in DISTORTION_TYPES if t != present]
    cands = [present, *(absent[i] for i in rng.choice(len(absent), 3, replace=False))]
    order = rng.permutation(4)
    cands = [cands[i] for i in order]
    return present, cands, cands.index(present)


def prompt_ids(tokenizer, present: str, cands: list[str], condition: str) -> list[int]:
    return list(_prompt_ids(tokenizer, present, tuple(cands), condition))


@cache
def _prompt_ids(tokenizer, present: str, cands: tuple[str, ...], condition: str) -> tuple[int, ...]:
    question = prompts.perception_question(TYPE_QUESTION, list(cands))
    if condition == "said":
        question = f"The image shows: {present}.\n{question}"
    elif condition == "letter":
        question = f"The answer is {prompts.OPTION_LETTERS[cands.index(present)]}.\n{question}"
    messages = [{"role": "system", "content": prompts.DEFAULT_SYSTEM}, {"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tuple(tokenizer.encode(text, add_special_tokens=False))


class CompactVocab:
    """The token ids of the probe's prompts and letters, renumbered 0..n-1 (0 is padding)."""

    def __init__(self, tokenizer, letter_ids: list[int], seed: int, draws: int = 4000):
        rng = np.random.default_rng([seed, 2])
        seen = dict.fromkeys(letter_ids)
        for i in range(draws):
            present, cands, _ = draw(rng)
            seen.update(dict.fromkeys(prompt_ids(tokenizer, present, cands, CONDITIONS[i % len(CONDITIONS)])))
        self.index = {t: k + 1 for k, t in enumerate(seen)}

    def __len__(self) -> int:
        return len(self.index) + 1

    def __call__(self, ids: list[int]) -> list[int]:
        try:
            return [self.index[t] for t in ids]
        except KeyError as e:
            raise SystemExit(f"token id {e} was not among the drawn prompts: raise CompactVocab's draws") from None


def batch(tokenizer, vocab: CompactVocab, rng, n: int, condition: str, letter_ids: list[int], device="cpu"):
    import torch

    rows, targets = [], []
    for _ in range(n):
        present, cands, k = draw(rng)
        rows.append(vocab(prompt_ids(tokenizer, present, cands, condition)))
        targets.append(vocab([letter_ids[k]])[0])
    return (*padded_batch(rows, 0, device), torch.tensor(targets, device=device))


def run(model_dir: Path, condition: str, steps: int, batch_size: int, lr: float, every: int, test: int,
        seed: int, device: str = "cpu") -> list[tuple[int, float]]:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    letter_ids = [tokenizer.encode(c, add_special_tokens=False)[0] for c in prompts.OPTION_LETTERS[:4]]
    vocab = CompactVocab(tokenizer, letter_ids, seed)
    config = AutoConfig.from_pretrained(model_dir)
    config.text_config.vocab_size = len(vocab)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    held = batch(tokenizer, vocab, np.random.default_rng([seed, 1]), test, condition, letter_ids, device)
    rng = np.random.default_rng([seed, 0])  # the same training draws for every condition
    curve = []
    for step in range(1, steps + 1):
        ids, mask, y = batch(tokenizer, vocab, rng, batch_size, condition, letter_ids, device)
        loss = torch.nn.functional.cross_entropy(answer_logits(model, ids, mask), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                pred = answer_logits(model, held[0], held[1]).argmax(-1)
            model.train()
            curve.append((step, float((pred == held[2]).float().mean())))
            print(f"  {condition:7s} step {step:5d}: loss {loss.item():.3f}, held-out accuracy {curve[-1][1]:.3f}",
                  flush=True)
    return curve


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--layers", type=int, help="override the preset's language-model depth")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (the proof's recipe: 3e-4)")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--test", type=int, default=400, help="held-out questions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = ap.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",")]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"--conditions: {', '.join(unknown)} unknown (choose from {', '.join(CONDITIONS)})")
    with tempfile.TemporaryDirectory() as tmp:
        spec = replace(PRESETS[args.preset], seed=args.seed)
        if args.layers:
            spec = replace(spec, num_hidden_layers=args.layers)
        model_dir = build_tiny_model(Path(tmp) / "model", spec, weights=False)
        results = {}
        for condition in conditions:
            start = time.perf_counter()
            results[condition] = run(model_dir, condition, args.steps, args.batch, args.lr, args.every, args.test,
                                     args.seed, args.device)
            print(f"  {condition}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{args.preset} preset ({spec.num_hidden_layers} layers of {spec.hidden_size}) on {args.device}, batch {args.batch}, lr {args.lr}, {args.test} held-out questions (chance 0.25)")
    print("condition  " + "  ".join(f"{s:>6d}" for s, _ in next(iter(results.values()))) + "   first step >= 0.9")
    for condition, curve in results.items():
        first = next((s for s, a in curve if a >= 0.9), None)
        print(f"{condition:9s}  " + "  ".join(f"{a:6.3f}" for _, a in curve) + f"   {first or 'never'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
