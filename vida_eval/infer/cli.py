"""``vida-eval infer`` (one task) and ``vida-eval eval`` (every task, submission, scores, report)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from ..cli_args import choice_list, existing_dir, fraction, output_dir, positive_int
from ..files import ensure_dir, write_json
from ..models.families import FAMILIES
from ..records import InputError, read_json
from .tasks import PIXEL_CHOICES, TASKS


def backend_name(args) -> str:
    """--backend, with auto resolved: vllm when it imports, else hf."""
    from .backends import vllm_available

    if args.backend != "auto":
        return args.backend
    if not hasattr(args, "resolved_backend"):
        args.resolved_backend = "vllm" if vllm_available() else "hf"
        print(f"backend: {args.resolved_backend}", file=sys.stderr)
    return args.resolved_backend


def planned_identity(args):
    """(fingerprint, settings, shares images) of the backend that would start, known without starting it; None
    when only the started backend knows (an adapter that vLLM serves merged into its base)."""
    from .backends import LocalModelBackend, OpenAIBackend

    name = backend_name(args)
    if name == "openai":
        return (*OpenAIBackend.identity(args.base_url, args.model, args.max_new_tokens), True)
    if name == "vllm" and args.lora:
        from .lora import vllm_unmerged_problem

        if vllm_unmerged_problem(args.lora):
            return None
    return (*LocalModelBackend.identity(args.model, args.lora, args.max_new_tokens), name == "vllm")


def _backend(args, out: Path):
    from .backends import make_backend

    name = backend_name(args)
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


def task_pixels(text: str) -> tuple[str, int]:
    """TASK=N of --max-pixels."""
    import argparse

    task, sep, value = text.partition("=")
    if not sep or task not in TASKS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected TASK=N with TASK one of {','.join(TASKS)}")
    return task, positive_int(value)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_args(args) -> None:
    """What each backend needs, checked before any engine starts: InputError naming the option or file."""
    if args.backend == "openai":
        if not args.base_url:
            raise InputError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if args.lora:
            raise InputError("--lora needs a local backend (hf or vllm); a server applies its own adapters")
        return
    if args.base_url:
        raise InputError(f"--base-url is for --backend openai (got {args.backend})")
    model = Path(args.model)
    if not model.exists() and not _HUB_ID.match(args.model):
        raise InputError(f"{model}: no such model folder")
    if model.exists():
        if not model.is_dir():
            raise InputError(f"{model}: is a file; --model takes a model folder")
        read_json(model / "config.json")
    if args.lora:
        try:
            read_json(Path(args.lora) / "adapter_config.json")
        except InputError as e:
            raise InputError(f"--lora: {e}") from None


def model_family(args):
    """(the model's family, its processor's default pixel limits): --family, else the model folder's config.json
    or the served model's name, else Qwen2-VL; a folder of another family than --family is an InputError."""
    from ..models.families import processor_limits, resolve_family

    folder = Path(args.model) if args.backend != "openai" and (Path(args.model) / "config.json").is_file() else None
    family = resolve_family(args.family, folder or args.model)
    if family.converts_boxes:
        print(f"family: {family.title}, boxes in pixels of each image as its processor resizes it (converted to and "
              "from 0..1000)", file=sys.stderr)
    return family, processor_limits(folder, family)


def _run_tasks(args, tasks, backend=None) -> tuple[Path, dict, Path | None]:
    """Answer *tasks* into ``args.out``; with *backend* (an engine already started) it is used and left open."""
    from .runner import all_cached, call_groups, find_bench, run_group
    from .tasks import BUILDERS, in_family, with_pixels

    release, images, gt = find_bench(Path(args.bench), Path(args.images) if args.images else None)
    family, limits = model_family(args)
    # Every bench file is read before a model loads.
    requests = {task: in_family(with_pixels(BUILDERS[task](release, images), args.pixels,
                                            dict(args.max_pixels).get(task)), family, limits)
                for task in tasks}
    check_model_args(args)
    out = ensure_dir(args.out)
    own = backend is None
    timings = {}
    if own:
        planned = planned_identity(args)
        if planned and all_cached(requests, out, *planned[:2]):
            from .backends import CachedAnswers

            print("every answer is in the caches: no engine started")
            backend = CachedAnswers(*planned)
        else:
            started = time.perf_counter()
            backend = start_backend(args, out)
            timings["engine_start_seconds"] = round(time.perf_counter() - started, 2)
    together = backend.shares_images and not getattr(args, "task_by_task", False)
    try:
        for group in call_groups(requests, together):
            r = run_group(group, requests, backend, out, chunk_size=args.chunk_size)
            timings[r.task] = {"requests": r.total, "computed": r.computed, "errors": r.errors,
                               "seconds": round(r.seconds, 2)}
            print(f"{r.task}: {r.total} requests ({r.computed} computed, {r.total - r.computed} from cache, "
                  f"{r.errors} errors) in {r.seconds:.1f} s -> {', '.join(str(p) for p in r.predictions)}")
    finally:
        if own:
            backend.close()
    return out, timings, gt


def start_backend(args, out: Path):
    try:
        return _backend(args, out)
    except (OSError, ValueError) as e:
        raise InputError(f"{args.model}: the model cannot be loaded ({type(e).__name__}: {e})") from None


def cmd_infer(args) -> int:
    _run_tasks(args, [args.task])
    return 0


def cmd_eval(args, backend=None) -> int:
    """Every task, the submission, scores (with ground truth) and the report in ``args.out``."""
    from ..console import print_diagnostics, print_table
    from ..records import SUBMISSION_FILES
    from ..report import write_report
    from ..scoring import score
    from ..submission import check_and_repair, write_submission

    start = time.perf_counter()
    tasks = args.tasks
    out, timings, gt_dir = _run_tasks(args, tasks, backend)
    answered = time.perf_counter()
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
    print_diagnostics(diags, limit=10)
    plots = write_report(out, gt_dir, report)
    end = time.perf_counter()
    write_json(out / "timings.json", {**timings, "report_seconds": round(end - answered, 2),
                                      "total_seconds": round(end - start, 2)})
    print(f"report: {', '.join(str(p) for p in plots)}")
    return 0


def _common(sp, model_required: bool = True) -> None:
    sp.add_argument("--model", required=model_required,
                    help="model folder (exported/merged) or the base with --lora; openai: the served model's name")
    sp.add_argument("--bench", required=True, type=existing_dir,
                    help="ViDA release root, ViDA-Bench folder or its release/ folder")
    sp.add_argument("--images", type=existing_dir, help="bench images folder (default: found from --bench)")
    sp.add_argument("--backend", default="auto", choices=("auto", "vllm", "hf", "openai"),
                    help="auto: vllm when it imports, else hf")
    sp.add_argument("--lora", type=existing_dir, help="a LoRA adapter to evaluate unmerged")
    sp.add_argument("--max-new-tokens", type=positive_int, help="cap every task's token limit (quick runs only)")
    sp.add_argument("--chunk-size", type=positive_int, default=512,
                    help="requests per engine call and per cache flush")
    sp.add_argument("--batch-size", type=positive_int, default=8, help="hf: requests per generate call")
    sp.add_argument("--tensor-parallel-size", type=positive_int, default=1)
    sp.add_argument("--data-parallel-size", type=positive_int, default=1, help="vllm: one engine per GPU")
    sp.add_argument("--gpu-memory-utilization", type=fraction, default=0.9)
    sp.add_argument("--kv-cache-memory-bytes", type=positive_int, help="vllm: KV cache size (CPU runs)")
    sp.add_argument("--max-model-len", type=positive_int, default=None)
    sp.add_argument("--enforce-eager", action="store_true", help="vllm: no CUDA graphs / compilation")
    sp.add_argument("--load-format", default="auto", choices=("auto", "dummy"),
                    help="vllm: dummy = random weights for a folder with config and tokenizer only (benchmarks)")
    sp.add_argument("--base-url", help="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    sp.add_argument("--api-key", default=None)
    sp.add_argument("--concurrency", type=positive_int, default=8, help="openai: requests in flight")
    sp.add_argument("--pixels", choices=PIXEL_CHOICES, default="official",
                    help="image pixel limits: official (the official scripts': perception 4..4096 tokens, the other "
                         "tasks the processor's 4..16,384) or train (the challenge recipe's 256..8,192 for every task)")
    sp.add_argument("--max-pixels", type=task_pixels, action="append", default=[], metavar="TASK=N",
                    help="one task's max_pixels (repeatable), over --pixels")
    sp.add_argument("--family", choices=sorted(FAMILIES),
                    help="the model's family, for its box convention (default: the model folder's config.json, or "
                         "the served model's name; else qwen2_vl)")


def add_tasks_option(sp) -> None:
    sp.add_argument("--tasks", type=choice_list(TASKS), default=list(TASKS),
                    help=f"comma-separated subset of {','.join(TASKS)}")
    sp.add_argument("--task-by-task", action="store_true",
                    help="one task per engine call (by default the tasks sharing a pixel setting share the calls, "
                         "so vLLM encodes each image once for all of them)")


def register(sub) -> None:
    sp = sub.add_parser("infer", help="answer one bench task with a model (resumable)")
    sp.add_argument("--task", required=True, choices=TASKS)
    sp.add_argument("--out", default="runs/infer", type=output_dir, help="run folder (answers are cached here)")
    _common(sp)
    sp.set_defaults(func=cmd_infer)

    sp = sub.add_parser("eval", help="every task, submission.zip, scores and report in one run folder")
    sp.add_argument("--out", default="runs/eval", type=output_dir, help="run folder")
    add_tasks_option(sp)
    _common(sp)
    sp.set_defaults(func=cmd_eval)

