"""``vida-eval sweep``: every checkpoint of a LLaMA-Factory run scored on a bench, against the training step.

Each ``checkpoint-N`` of the run goes through ``vida-eval eval`` into
``OUT/checkpoint-N/`` (the same resumable path: a rerun recomputes nothing it
finished), then ``OUT/sweep.json`` gathers per checkpoint its step and the
official scores, and ``OUT/sweep.png`` draws the Final Score and each metric
against the step with the training loss of ``trainer_log.jsonl`` on a second
axis. A LoRA checkpoint is evaluated as ``eval --lora`` does (``--model`` is
the base); a full checkpoint is the model itself. hf starts one engine per
checkpoint; vLLM starts one for the whole sweep when it can apply the
checkpoints' adapters unmerged, and one per checkpoint when they must be merged.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
from pathlib import Path

from ..files import atomic_write, ensure_dir, write_json
from ..metrics import FINAL_SCORE_PARTS
from ..records import InputError, read_json

SWEEP_FILE = "sweep.json"
SOURCE_FILE = "sweep_source.json"  # in each checkpoint's folder: the checkpoint's fingerprint when it was scored
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(run: Path, every: int = 1) -> list[tuple[int, Path]]:
    """(step, folder) of the run's ``checkpoint-N`` folders by step: every *every*-th, and always the last."""
    found = sorted((int(m.group(1)), p) for p in Path(run).iterdir()
                   if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    return [c for i, c in enumerate(found) if i % every == 0 or i == len(found) - 1]


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def training_loss(run: Path) -> list[tuple[int, float]]:
    """(step, loss) from LLaMA-Factory's ``trainer_log.jsonl`` (lines that cannot be read are skipped)."""
    from ..data.readers import iter_jsonl

    path = Path(run) / "trainer_log.jsonl"
    out = []
    for _, rec in iter_jsonl(path) if path.is_file() else ():
        step, loss = (rec.get("current_steps"), rec.get("loss")) if isinstance(rec, dict) else (None, None)
        if isinstance(step, int) and isinstance(loss, (int, float)):
            out.append((step, float(loss)))
    return out


def _finished(dest: Path, fingerprint: str) -> bool:
    if not (dest / "scores.json").is_file() or not (dest / SOURCE_FILE).is_file():
        return False
    try:
        return read_json(dest / SOURCE_FILE).get("fingerprint") == fingerprint
    except (InputError, AttributeError):
        return False


def cmd_sweep(args) -> int:
    from ..models.fingerprint import model_fingerprint
    from .cli import check_model_args, cmd_eval, start_backend
    from .lora import vllm_unmerged_problem
    from .runner import find_bench

    run, out = Path(args.run), ensure_dir(args.out)
    found = checkpoints(run, args.every)
    if not found:
        raise InputError(f"{run}: no checkpoint-N folders (set save_steps in the recipe)")
    _, _, gt = find_bench(Path(args.bench), Path(args.images) if args.images else None)
    if gt is None:
        raise InputError(f"{args.bench}: no ground truth beside the bench (a sweep scores every checkpoint)")
    adapters = [is_adapter(p) for _, p in found]
    if any(adapters) and not all(adapters):
        raise InputError(f"{run}: LoRA and full checkpoints mixed; sweep one kind")
    if args.backend == "openai":
        raise InputError("sweep evaluates checkpoints on this machine: --backend hf or vllm")
    if adapters[0] and not args.model:
        raise InputError(f"{run}: LoRA checkpoints; give their base model with --model")
    shared = None  # one vLLM engine for every checkpoint, when it can apply their adapters unmerged
    rows = []
    try:
        for step, folder in found:
            sub = copy.copy(args)
            sub.out = str(out / folder.name)
            if adapters[0]:
                sub.lora = str(folder)
            else:
                sub.model, sub.lora = str(folder), None
            fingerprint = model_fingerprint(sub.model, sub.lora)
            dest = Path(sub.out)
            if _finished(dest, fingerprint):
                print(f"{folder.name}: scored before, kept ({dest / 'scores.json'})")
            else:
                check_model_args(sub)
                backend = None
                if adapters[0] and args.backend == "vllm" and vllm_unmerged_problem(folder) is None:
                    if shared is None:
                        shared = start_backend(sub, ensure_dir(dest))
                    else:
                        shared.use_adapter(sub.lora)
                    backend = shared
                print(f"{folder.name}: evaluating (step {step})", file=sys.stderr)
                cmd_eval(sub, backend)
                write_json(dest / SOURCE_FILE, {"checkpoint": str(folder), "fingerprint": fingerprint})
                # A merged copy of the base (vLLM, adapters it cannot apply) is the size of the model: once the
                # checkpoint is scored its answers are cached, and the copy goes.
                shutil.rmtree(dest / "merged-model", ignore_errors=True)
            scores = read_json(dest / "scores.json")
            rows.append({"checkpoint": folder.name, "step": step,
                         **{k: scores[k] for k in ("Final Score", *FINAL_SCORE_PARTS) if k in scores}})
    finally:
        if shared is not None:
            shared.close()
    loss = training_loss(run)
    write_json(out / SWEEP_FILE, {"run": str(run), "bench": str(args.bench), "checkpoints": rows,
                                  "training_loss": [{"step": s, "loss": v} for s, v in loss]})
    plot = plot_sweep(rows, loss, out / "sweep.png")
    print(f"{'checkpoint':<20}{'step':>8}{'Final Score':>14}")
    for r in rows:
        print(f"{r['checkpoint']:<20}{r['step']:>8}{r.get('Final Score', float('nan')):>14.4f}")
    print(f"sweep: {out / SWEEP_FILE}, {plot}")
    return 0


def plot_sweep(rows: list[dict], loss: list[tuple[int, float]], path: Path) -> Path:
    """The Final Score and each official metric against the step; the training loss on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    steps = [r["step"] for r in rows]
    for key in ("Final Score", *FINAL_SCORE_PARTS):
        if all(key in r for r in rows):
            ax.plot(steps, [r[key] for r in rows], marker="o", lw=2.4 if key == "Final Score" else 1.2, label=key)
    ax.set_xlabel("training step")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    if loss:
        twin = ax.twinx()
        twin.plot([s for s, _ in loss], [v for _, v in loss], color="grey", lw=0.8, alpha=0.7)
        twin.set_ylabel("training loss", color="grey")
    ax.set_title("Scores by checkpoint")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def register(sub) -> None:
    from ..cli_args import existing_dir, output_dir, positive_int
    from .cli import _common, add_tasks_option

    sp = sub.add_parser("sweep", help="score every checkpoint of a training run on a bench (resumable)")
    sp.add_argument("--run", required=True, type=existing_dir, help="the run's output_dir (holding checkpoint-N)")
    sp.add_argument("--out", required=True, type=output_dir, help="the sweep folder (one eval folder per checkpoint)")
    sp.add_argument("--every", type=positive_int, default=1, help="evaluate every K-th checkpoint (and the last)")
    add_tasks_option(sp)
    _common(sp, model_required=False)
    sp.set_defaults(func=cmd_sweep)
