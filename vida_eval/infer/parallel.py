"""Data parallel vLLM: one engine per GPU in its own process, requests split by image."""

from __future__ import annotations

import multiprocessing as mp
import os

from .backends import Backend, model_fingerprint


def _worker(rank: int, model: str, kwargs: dict, conn) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    from .backends import VLLMBackend

    backend = VLLMBackend(model, **kwargs)
    conn.send("ready")
    while True:
        requests = conn.recv()
        if requests is None:
            break
        conn.send(backend.run(requests))


class DataParallelBackend(Backend):
    """Splits each chunk across N single-GPU vLLM engines; answers come back in request order."""

    name = "vllm"

    def __init__(self, size: int, model: str, kwargs: dict):
        self.model_path, self.adapter = model, kwargs.get("adapter")
        self.max_new_tokens = kwargs.get("max_new_tokens")
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for rank in range(size):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(rank, model, kwargs, child), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            if c.recv() != "ready":
                raise RuntimeError("a vLLM worker failed to start")

    def fingerprint(self) -> str:
        return model_fingerprint(self.model_path, self.adapter)

    def settings(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens}

    def run(self, requests):
        # Whole images per shard keep each engine's prefix and multimodal caches useful.
        by_image: dict = {}
        for i, r in enumerate(requests):
            by_image.setdefault(str(r.image), []).append(i)
        shards: list[list[int]] = [[] for _ in self.conns]
        for group in sorted(by_image.values(), key=len, reverse=True):
            min(shards, key=len).extend(group)
        for conn, shard in zip(self.conns, shards):
            conn.send([requests[i] for i in shard])
        outputs = [None] * len(requests)
        for conn, shard in zip(self.conns, shards):
            for i, out in zip(shard, conn.recv()):
                outputs[i] = out
        return outputs

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=60)
