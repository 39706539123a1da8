"""Data parallel vLLM: one engine per GPU in its own process, chunks handed to whichever engine is free."""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.connection import wait

from ..records import InputError
from .backends import LocalModelBackend
from .runner import even_chunks


def _worker(device: str, threads: int, model: str, kwargs: dict, conn) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    # Before torch loads, here and in the engine-core process vLLM starts from here. A single-GPU engine
    # otherwise sizes its CPU thread pools to every core; with N engines those pools spin against the
    # one Python thread per process that launches each decoding step (measured in bench/RESULTS.md).
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from .backends import make_backend

    try:
        backend = make_backend("vllm", model, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the GPU
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    while True:
        requests = conn.recv()
        if requests is None:
            break
        conn.send(backend.run(requests))


def devices(size: int, visible: str | None) -> list[str]:
    """The GPU each engine sees: the rank-th of CUDA_VISIBLE_DEVICES (or of all GPUs when it is unset)."""
    if visible is None:
        return [str(rank) for rank in range(size)]
    ids = [d.strip() for d in visible.split(",") if d.strip()]
    if len(ids) < size:
        raise InputError(f"--data-parallel-size {size} needs {size} GPUs; CUDA_VISIBLE_DEVICES={visible!r} "
                         f"names {len(ids)}")
    return ids[:size]


ENGINE_THREADS = 4  # enough for an engine's CPU work on image tensors, too few to spin against the others


def threads_per_engine(size: int) -> int:
    """CPU threads for each of *size* engines: an even share of this process's cores, at most ENGINE_THREADS."""
    return max(1, min(ENGINE_THREADS, len(os.sched_getaffinity(0)) // size))


class DataParallelBackend(LocalModelBackend):
    """N single-GPU vLLM engines, each in its own process, each answering whole chunks.

    The runner hands over chunks (``run_chunks``); every engine takes the next chunk as soon as it has
    answered its last, so no engine waits for another, and each finished chunk reaches the answer cache
    at once. Fingerprint and settings are the model folder's, as for one engine.
    """

    name = "vllm"
    shares_images = True

    def __init__(self, size: int, model: str, kwargs: dict):
        self.model_path, self.adapter = model, kwargs.get("adapter")
        self.max_new_tokens = kwargs.get("max_new_tokens")
        self.engines = size
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        self.devices = devices(size, os.environ.get("CUDA_VISIBLE_DEVICES"))
        threads = threads_per_engine(size)
        for device in self.devices:
            parent, child = ctx.Pipe()
            # Not a daemon: each engine starts its own engine-core process, which a daemon may not.
            p = ctx.Process(target=_worker, args=(device, threads, model, kwargs, child))
            p.start()
            child.close()  # so that a worker's death reads as EOF here instead of a hang
            self.conns.append(parent)
            self.procs.append(p)
        for device, conn in zip(self.devices, self.conns):
            try:
                status = conn.recv()
            except EOFError:
                status = "the process died"
            if status != "ready":
                self.close()
                raise RuntimeError(f"the vLLM engine for GPU {device} failed to start: {status}")

    def run_chunks(self, chunks):
        pending = list(reversed(chunks))
        busy: dict = {}  # connection -> (GPU, chunk in flight)

        def give(conn, device):
            if pending:
                chunk = pending.pop()
                conn.send(chunk)
                busy[conn] = (device, chunk)

        for device, conn in zip(self.devices, self.conns):
            give(conn, device)
        while busy:
            for conn in wait(list(busy)):
                device, chunk = busy.pop(conn)
                try:
                    outputs = conn.recv()
                except EOFError:
                    raise RuntimeError(f"the vLLM engine for GPU {device} died; finished chunks are cached, "
                                       "the same command resumes after them") from None
                give(conn, device)
                yield chunk, outputs

    def run(self, requests):
        parts = even_chunks(requests, max(1, len(requests)), self.engines)  # one part per engine
        answers = {id(chunk): outputs for chunk, outputs in self.run_chunks(parts)}
        return [out for chunk in parts for out in answers[id(chunk)]]

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
