"""``vida-eval infer`` (one task) and ``vida-eval eval`` (every task, submission, scores, report)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..records import InputError, write_json
from .tasks import TASKS


def _backend(args, out: Path):
    from .backends import make_backend, vllm_available

    name = args.backend
    if name == "auto":
        name = "vllm" if vllm_available() else "hf"
        print(f"backend: {name}", file=sys.stderr)
    if args.load_format != "auto" and name != "vllm":
        raise InputError(f"--load-format {args.load_format} needs the vllm backend (got {name})")
    model, adapter = args.model, args.lora
    if name == "vllm" and adapter:
        from .lora import merged_model, vllm_unmerged_problem

        why = vllm_unmerged_problem(adapter)
        if why:
            print(f"vllm: {adapter} is served merged into the base, from {out / 'merged-model'} (made once): "
                  f"vLLM cannot apply it unmerged ({why})", file=sys.stderr)
            model, adapter = str(merged_model(model, adapter, out / "merged-model")), None
    kw = dict(adapter=adapter, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
              base_url=args.base_url, api_key=args.api_key, concurrency=args.concurrency)
    if name == "vllm":
        kw.update(tensor_parallel_size=args.tensor_parallel_size, enforce_eager=args.enforce_eager,
                  max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                  load_format=args.load_format)
        if args.kv_cache_memory_bytes:
            kw["kv_cache_memory_bytes"] = args.kv_cache_memory_bytes
        if args.data_parallel_size > 1:
            from .parallel import DataParallelBackend

            return DataParallelBackend(args.data_parallel_size, model, kw)
    return make_backend(name, model, **kw)


def _run_tasks(args, tasks) -> tuple[Path, dict, Path | None]:
    from .runner import find_bench, run_task

    release, images, gt = find_bench(Path(args.bench), Path(args.images) if args.images else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = _backend(args, out)
    timings = {}
    try:
        for task in tasks:
            r = run_task(task, backend, release, images, out, chunk_size=args.chunk_size)
            timings[task] = {"requests": r.total, "computed": r.computed, "errors": r.errors,
                             "seconds": round(r.seconds, 2)}
            print(f"{task}: {r.total} requests ({r.computed} computed, {r.total - r.computed} from cache, "
                  f"{r.errors} errors) in {r.seconds:.1f} s -> {r.predictions}")
    finally:
        backend.close()
    return out, timings, gt


def cmd_infer(args) -> int:
    _run_tasks(args, [args.task])
    return 0


def cmd_eval(args) -> int:
    from ..cli import _print_diagnostics, print_table
    from ..records import SUBMISSION_FILES
    from ..report import write_report
    from ..scoring import score
    from ..submission import check_and_repair, write_submission

    start = time.perf_counter()
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    out, timings, gt_dir = _run_tasks(args, tasks)
    files = {f"{t}.json": json.loads((out / f"{t}.json").read_text()) for t in tasks}
    submission = {k: v for k, v in files.items() if k in SUBMISSION_FILES}
    diags = check_and_repair(submission)
    write_submission(submission, out / "submission.zip")
    print(f"submission: {out / 'submission.zip'}")
    report = None
    if gt_dir is not None:
        from ..records import read_ground_truth
        from ..scoring import needed_ground_truth

        report = score(files, read_ground_truth(gt_dir, needed_ground_truth(files)))
        write_json(out / "scores.json", report.to_dict())
        print_table(report)
        diags = report.diagnostics
    _print_diagnostics(diags, limit=10)
    plots = write_report(out, gt_dir, report)
    write_json(out / "timings.json", {**timings, "total_seconds": round(time.perf_counter() - start, 2)})
    print(f"report: {', '.join(str(p) for p in plots)}")
    return 0


def _common(sp) -> None:
    sp.add_argument("--model", required=True, help="model folder (exported/merged) or the base with --lora")
    sp.add_argument("--bench", required=True, help="ViDA release root, ViDA-Bench folder or its release/ folder")
    sp.add_argument("--images", help="bench images folder (default: found from --bench)")
    sp.add_argument("--backend", default="auto", choices=("auto", "vllm", "hf", "openai"),
                    help="auto: vllm when it imports, else hf")
    sp.add_argument("--lora", help="a LoRA adapter to evaluate unmerged")
    sp.add_argument("--max-new-tokens", type=int, help="cap every task's token limit (quick runs only)")
    sp.add_argument("--chunk-size", type=int, default=512, help="requests per engine call and per cache flush")
    sp.add_argument("--batch-size", type=int, default=8, help="hf: requests per generate call")
    sp.add_argument("--tensor-parallel-size", type=int, default=1)
    sp.add_argument("--data-parallel-size", type=int, default=1, help="vllm: one engine per GPU")
    sp.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    sp.add_argument("--kv-cache-memory-bytes", type=int, help="vllm: KV cache size (CPU runs)")
    sp.add_argument("--max-model-len", type=int, default=None)
    sp.add_argument("--enforce-eager", action="store_true", help="vllm: no CUDA graphs / compilation")
    sp.add_argument("--load-format", default="auto", choices=("auto", "dummy"),
                    help="vllm: dummy = random weights for a folder with config and tokenizer only (benchmarks)")
    sp.add_argument("--base-url", help="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    sp.add_argument("--api-key", default=None)
    sp.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")


def register(sub) -> None:
    sp = sub.add_parser("infer", help="answer one bench task with a model (resumable)")
    sp.add_argument("--task", required=True, choices=TASKS)
    sp.add_argument("--out", default="runs/infer", help="run folder (answers are cached here)")
    _common(sp)
    sp.set_defaults(func=cmd_infer)

    sp = sub.add_parser("eval", help="every task, submission.zip, scores and report in one run folder")
    sp.add_argument("--out", default="runs/eval", help="run folder")
    sp.add_argument("--tasks", help=f"comma-separated subset of {','.join(TASKS)}")
    _common(sp)
    sp.set_defaults(func=cmd_eval)

