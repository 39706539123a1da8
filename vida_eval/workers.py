"""A map over jobs, in order, in this process or in spawned worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


def in_order(fn: Callable, jobs: list, workers: int, progress: Callable[[int], object] | None = None) -> Iterator:
    """fn(job) for every job, in the jobs' order: in this process, or spread over *workers* spawned ones.

    Spawned, not forked: a fork of a process whose torch threads have started can hang in the child."""
    if workers <= 1 or len(jobs) < 2:
        results: Iterable = map(fn, jobs)
        pool = None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(fn, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    try:
        for result in results:
            if progress:
                progress(1)
            yield result
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
