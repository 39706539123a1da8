"""Running tasks with a resumable answer cache, and the whole evaluation of a model on a bench."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import write_json
from .tasks import BUILDERS, OUTPUT_FILE, Request, to_prediction


class AnswerCache:
    """Append-only JSONL of finished answers, keyed by everything that determines them.

    Each chunk is flushed and fsynced, so a run killed at any point (kill -9
    included) loses at most the chunk in flight; a torn last line is ignored.
    Only answers are kept: a request that failed (its image missing, its server
    down) is reported in the task's output and asked again on the next run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.answers: dict[str, dict] = {}
        self.torn = 0
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        if "error" not in rec["output"]:  # written by an earlier version that kept failures
                            self.answers[rec["key"]] = rec["output"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.torn += 1

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def __getitem__(self, key: str) -> dict:
        return self.answers[key]

    def add(self, items: list[tuple[str, str, dict]]) -> None:
        """Append the answers among (key, record uid, output) entries durably; failures are not kept."""
        items = [(k, uid, o) for k, uid, o in items if "error" not in o]
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if f.tell() and self.torn:
                f.write("\n")  # end a torn line so the next record stands on its own
                self.torn = 0
            for key, uid, output in items:
                f.write(json.dumps({"key": key, "id": uid, "output": output}, ensure_ascii=False) + "\n")
                self.answers[key] = output
            f.flush()
            os.fsync(f.fileno())


def request_key(req: Request, fingerprint: str, settings: dict) -> str:
    """Hash of task, record, model, prompt, image and decoding settings."""
    payload = json.dumps([req.task, req.uid, fingerprint, req.system, req.user, req.assistant_prefix,
                          str(req.image), req.max_new_tokens, req.min_pixels, req.max_pixels, req.fixed_length,
                          settings],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def locality_order(requests: list[Request]) -> list[Request]:
    """Requests sharing an image and a system prompt side by side (prefix and multimodal cache hits)."""
    return sorted(requests, key=lambda r: (str(r.image), r.system or "", r.user))


def even_chunks(items: list, size: int, engines: int = 1) -> list[list]:
    """Consecutive chunks of at most *size* items, as even as possible, in a number that is a multiple of *engines*.

    k = engines * ceil(ceil(n / size) / engines) chunks (never more than n); chunk i holds items
    [i * n // k, (i + 1) * n // k). A chunk is one engine call; with even chunks, equally many for each
    engine, no engine is left with a lone remainder while the others idle.
    """
    n = len(items)
    if not n:
        return []
    calls = -(-n // size)  # ceil(n / size)
    k = min(n, -(-calls // engines) * engines)
    return [items[i * n // k:(i + 1) * n // k] for i in range(k)]


@dataclass
class TaskResult:
    """One engine-call group: a task, or several tasks answered in the same calls."""

    task: str  # "grounding", or "grounding+description+scoring"
    predictions: list[Path]
    total: int
    computed: int
    errors: int
    seconds: float


def run_requests(requests: list[Request], backend, cache: AnswerCache | dict[str, AnswerCache], chunk_size: int = 256,
                 desc: str = "requests", progress: bool = True) -> tuple[list[dict], int]:
    """Outputs of *requests* in their order, computing only what the cache lacks; returns (outputs, computed).

    *cache*: one AnswerCache, or one per task ({task: cache}) when the requests of several tasks share the calls.
    """
    from tqdm import tqdm

    def cache_of(r: Request) -> AnswerCache:
        return cache[r.task] if isinstance(cache, dict) else cache

    fingerprint, settings = backend.fingerprint(), backend.settings()
    keys = [request_key(r, fingerprint, settings) for r in requests]
    key_of = {id(r): k for r, k in zip(requests, keys)}
    todo = locality_order([r for r, k in zip(requests, keys) if k not in cache_of(r)])
    bar = tqdm(total=len(requests), initial=len(requests) - len(todo), desc=desc, unit="req",
               disable=not progress or None, file=sys.stderr)
    failed: dict[str, dict] = {}
    for chunk, outputs in backend.run_chunks(even_chunks(todo, chunk_size, backend.engines)):
        by_cache: dict[int, tuple[AnswerCache, list]] = {}
        for r, o in zip(chunk, outputs):
            c = cache_of(r)
            by_cache.setdefault(id(c), (c, []))[1].append((key_of[id(r)], r.uid, o))
        for c, items in by_cache.values():
            c.add(items)
        failed.update((key_of[id(r)], o) for r, o in zip(chunk, outputs) if "error" in o)
        bar.update(len(chunk))
    bar.close()
    return [failed[k] if k in failed else cache_of(r)[k] for r, k in zip(requests, keys)], len(todo)


def cache_path(out: Path, task: str) -> Path:
    return out / "cache" / f"{task}.jsonl"


def all_cached(requests: dict[str, list[Request]], out: Path, fingerprint: str, settings: dict) -> bool:
    """True when every request of every task has its answer in ``out``'s caches under this backend identity."""
    for task, reqs in requests.items():
        cache = AnswerCache(cache_path(out, task))
        if any(request_key(r, fingerprint, settings) not in cache for r in reqs):
            return False
    return True


def pixel_setting(requests: list[Request]) -> tuple | None:
    """The (min_pixels, max_pixels) every request shares, or None when they differ."""
    settings = {(r.min_pixels, r.max_pixels) for r in requests}
    return settings.pop() if len(settings) == 1 else None


def call_groups(requests: dict[str, list[Request]], together: bool) -> list[list[str]]:
    """The tasks in groups answered by the same engine calls: with *together*, the tasks whose requests share a
    pixel setting (so each image is encoded once for all of them), in task order; else one task a group."""
    if not together:
        return [[t] for t in requests]
    groups: dict[object, list[str]] = {}
    for task, reqs in requests.items():
        setting = pixel_setting(reqs)
        groups.setdefault(setting if setting is not None else ("alone", task), []).append(task)
    return list(groups.values())


def run_group(tasks: list[str], requests: dict[str, list[Request]], backend, out: Path, chunk_size: int = 256,
              progress: bool = True) -> TaskResult:
    """Answer the requests of *tasks* in shared engine calls, ordered by image (reusing cached answers; each task
    keeps its own cache), and write ``out/<task>.json`` for each. The answers are those of each task run alone:
    the requests, their keys and their decoding are the same; only their neighbours in a call change."""
    start = time.perf_counter()
    caches = {t: AnswerCache(cache_path(out, t)) for t in tasks}
    every = [r for t in tasks for r in requests[t]]
    name = "+".join(tasks)
    outputs, computed = run_requests(every, backend, caches, chunk_size, name, progress)
    paths, errors, at = [], 0, 0
    for t in tasks:
        n = len(requests[t])
        predictions = [to_prediction(r, o) for r, o in zip(requests[t], outputs[at:at + n])]
        at += n
        errors += sum(1 for p in predictions if "error" in p)
        paths.append(out / OUTPUT_FILE[t])
        write_json(paths[-1], predictions)
    return TaskResult(name, paths, len(every), computed, errors, time.perf_counter() - start)


def run_task(task: str, backend, release: Path, images: Path, out: Path, chunk_size: int = 256,
             progress: bool = True, requests: list[Request] | None = None) -> TaskResult:
    """Answer every request of *task* (reusing cached answers) and write ``out/<task>.json``.

    *requests*: the task's requests when already built (by default built from the bench files)."""
    if requests is None:
        requests = BUILDERS[task](Path(release), Path(images))
    return run_group([task], {task: requests}, backend, out, chunk_size, progress)


def find_bench(bench: Path, images: Path | None = None) -> tuple[Path, Path, Path | None]:
    """(release folder, images folder, ground-truth folder or None) from a release root or a ViDA-Bench folder."""
    from ..data.layout import Release

    bench = Path(bench)
    if (bench / "mcq.json").is_file() and (bench / "benchmark.json").is_file():
        release, gt = bench, bench.parent / "ground_truth"
        default_images = bench.parent.parent / "images"
    elif (bench / "release").is_dir():
        release, gt = bench / "release", bench / "ground_truth"
        # A bench of its own (vida-eval data holdout) holds its images; ViDA-Bench's sit beside it in val/.
        default_images = bench / "images" if (bench / "images").is_dir() else bench.parent / "images"
    else:
        r = Release(bench)
        release, gt, default_images = r.bench_release, r.bench_gt, r.val_images
    from ..data.layout import BENCH_RELEASE
    from ..records import InputError

    missing = [n for n in BENCH_RELEASE if not (release / n).is_file()]
    if len(missing) == len(BENCH_RELEASE):
        raise InputError(f"{bench}: no ViDA-Bench release files ({', '.join(BENCH_RELEASE)}) found")
    if missing:
        raise InputError(f"{release}: {', '.join(missing)} missing (a ViDA-Bench release holds "
                         f"{', '.join(BENCH_RELEASE)})")
    images = Path(images) if images else default_images
    if not images.is_dir():
        raise InputError(f"{images}: no bench images folder (give it with --images)")
    return release, images, (gt if (gt / "mcq.json").is_file() else None)
