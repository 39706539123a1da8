"""`vida-eval eval` on one GPU and data parallel over N GPUs, side by side in one run.

Runs the same evaluation twice on the same model and bench, as ``make eval``
does: once on the first GPU alone, once with ``--data-parallel-size N`` (one
vLLM engine per GPU). Prints each task's requests and seconds for both, the
speed-up (one-GPU seconds / N-GPU seconds, ideal N) per task and for all
tasks together, how many answers agree between the runs, and both runs'
scores. Greedy answers need not agree to the token: vLLM's bf16 kernels sum
in an order that depends on the batch, and each engine sees a different
batch; the scores show whether that matters.

    python bench/eval_data_parallel.py --model saves/small-qwen2vl/full/vida_synth \
        --bench data/vida-synth-release --gpus 2 --out runs/dp-bench
    python bench/eval_data_parallel.py --dummy-7b --bench data/vida-synth-release --gpus 2 -- --max-new-tokens 256

``--dummy-7b`` evaluates a Qwen2-VL-7B-shaped model with random weights
(vLLM ``load_format="dummy"``), where decoding costs GPU time as with a real
model. Random weights rarely stop early, so most answers run to their token
limit.

Exit status 0 when both runs answered every request, 2 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vida_eval.infer.tasks import TASKS
from vida_eval.metrics import FINAL_SCORE_PARTS

MOS_TOLERANCE = 1e-3  # two engines may batch differently, and bf16 sums then round differently


def speedups(one: dict, many: dict) -> list[tuple[str, int, float, float, float]]:
    """(task, requests, one-GPU s, N-GPU s, speed-up) per task, for all tasks together and for the whole run.

    speed-up = seconds on one GPU / seconds on N GPUs. A row is a task, or tasks answered in the same engine
    calls ("grounding+description+scoring"); "tasks" sums the rows' seconds; "total" is the whole run, engine
    start-up included, which data parallelism overlaps but cannot shorten.
    """
    def row(name, requests, a, b):
        return name, requests, a, b, a / b if b else float("inf")

    rows = [row(name, one[name]["requests"], one[name]["seconds"], many[name]["seconds"])
            for name in one if isinstance(one[name], dict) and name in many]
    requests = sum(r[1] for r in rows)
    rows.append(row("tasks", requests, sum(r[2] for r in rows), sum(r[3] for r in rows)))
    rows.append(row("total", requests, one["total_seconds"], many["total_seconds"]))
    return rows


def agreement(one: dict[str, list[dict]], many: dict[str, list[dict]]) -> dict[str, tuple[int, int]]:
    """Per task: (answers the same in both runs, answers in the one-GPU run).

    Matched by request id; a request missing from the N-GPU run counts as different.
    """
    out = {}
    for task, records in one.items():
        theirs = {r["id"]: r for r in many.get(task, [])}
        same = 0
        for r in records:
            other = theirs.get(r["id"])
            if other is None:
                continue
            if "pred_mos" in r:
                same += other.get("pred_mos") is not None and abs(r["pred_mos"] - other["pred_mos"]) <= MOS_TOLERANCE
            else:
                same += r.get("pred_ans") == other.get("pred_ans")
        out[task] = (same, len(records))
    return out


def run_eval(model: str, bench: str, out: Path, gpus: str, dp: int, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "vida_eval", "eval", "--model", model, "--bench", bench, "--out", str(out),
           "--backend", "vllm", "--data-parallel-size", str(dp), *extra]
    print("$ CUDA_VISIBLE_DEVICES=" + gpus, " ".join(cmd), flush=True)
    return subprocess.run(cmd, env={**os.environ, "CUDA_VISIBLE_DEVICES": gpus}).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model folder")
    which.add_argument("--dummy-7b", action="store_true", help="a Qwen2-VL-7B-shaped model with random weights")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--gpus", type=int, default=2, help="GPUs for the data-parallel run")
    ap.add_argument("--out", type=Path, default=Path("runs/dp-bench"))
    ap.add_argument("extra", nargs="*", help="more `vida-eval eval` options for both runs (after --)")
    args = ap.parse_args(argv)

    model, extra = args.model, args.extra
    if args.dummy_7b:
        from vida_eval.models.tiny import QWEN2_VL_7B, build_tiny_model

        model = str(build_tiny_model(args.out / "qwen2vl-7b-shape", QWEN2_VL_7B, weights=False))
        extra = ["--load-format", "dummy", *extra]
    runs = {1: args.out / "gpus-1", args.gpus: args.out / f"gpus-{args.gpus}"}
    for dp, folder in runs.items():
        gpus = ",".join(str(i) for i in range(dp))
        if run_eval(model, args.bench, folder, gpus, dp, extra) != 0:
            print(f"{folder}: the {dp}-GPU run failed", file=sys.stderr)
            return 2

    timings = {dp: json.loads((folder / "timings.json").read_text()) for dp, folder in runs.items()}
    print(f"\n{'task':<12} {'requests':>8} {'1 GPU s':>9} {f'{args.gpus} GPUs s':>10} {'speed-up':>9}")
    for task, n, a, b, ratio in speedups(timings[1], timings[args.gpus]):
        print(f"{task:<12} {n:>8} {a:>9.2f} {b:>10.2f} {ratio:>8.2f}x")

    answers = {dp: {t: json.loads((folder / f"{t}.json").read_text()) for t in TASKS
                    if (folder / f"{t}.json").is_file()} for dp, folder in runs.items()}
    print(f"\n{'task':<12} {'same answers':>14}")
    for task, (same, total) in agreement(answers[1], answers[args.gpus]).items():
        print(f"{task:<12} {same:>6} of {total:<6}")
    complete = all(len(answers[dp].get(t, [])) == timings[1][t]["requests"] for dp in runs for t in answers[1])

    scores = {dp: json.loads((folder / "scores.json").read_text()) for dp, folder in runs.items()
              if (folder / "scores.json").is_file()}
    if len(scores) == 2:
        print(f"\n{'metric':<24} {'1 GPU':>8} {f'{args.gpus} GPUs':>8}")
        for metric in ("Final Score", *FINAL_SCORE_PARTS):
            a, b = (scores[dp].get(metric, float("nan")) for dp in runs)
            print(f"{metric:<24} {a:>8.4f} {b:>8.4f}")
    return 0 if complete else 2


if __name__ == "__main__":
    sys.exit(main())
