"""bench/floor.py: the FLOPs it counts are the FLOPs the model does (torch's own counter on a real forward)."""

import importlib.util
import sys

import pytest

from .conftest import ROOT

torch = pytest.importorskip("torch")
spec = importlib.util.spec_from_file_location("floor", ROOT / "bench" / "floor.py")
floor = sys.modules["floor"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
spec.loader.exec_module(floor)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from vida_eval.models.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("floor") / "model")
    # Eager attention: its matmuls are what torch's counter counts (it has no formula for the CPU's fused kernel).
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    return folder, model, AutoProcessor.from_pretrained(folder)


def _counted(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("size", [(448, 336), (224, 644)])
def test_vision_flops_match_the_forward(tiny, size):
    from PIL import Image

    folder, model, processor = tiny
    image = Image.new("RGB", size, (90, 120, 150))
    inputs = processor.image_processor(images=[image], return_tensors="pt")
    grid = inputs["image_grid_thw"]
    tokens = int(grid.prod()) // floor.MERGE
    counted = _counted(lambda: model.model.visual(inputs["pixel_values"], grid_thw=grid))
    ours = floor.vision_flops(floor.Shape.from_model(folder), tokens)
    assert counted == ours["linear"] + ours["attention"]


def test_prefill_flops_match_the_forward(tiny):
    folder, model, _ = tiny
    tokens = 300
    ids = torch.randint(0, 1000, (1, tokens))
    counted = _counted(lambda: model(input_ids=ids, logits_to_keep=1))
    ours = floor.prefill_flops(floor.Shape.from_model(folder), tokens, causal=False)  # eager computes all L^2
    # Beyond ours, the counter finds the rotary angles' outer product (3 sections x head_dim / 2 x L x 2).
    rotary = 2 * 3 * (64 // 2 // 2) * tokens
    assert counted == ours["linear"] + ours["attention"] + rotary


def test_floor_counts_an_image_once_for_its_requests(tiny):
    folder, _, _ = tiny
    shape = floor.Shape.from_model(folder)
    reqs = [floor.RequestTokens("a.jpg", 1000, 1100, 8), floor.RequestTokens("a.jpg", 1000, 1050, 0),
            floor.RequestTokens("b.jpg", 400, 450, 8)]
    once = floor.floor_seconds(shape, reqs, rate=1e12, bandwidth=1e11)
    each = floor.floor_seconds(shape, reqs, rate=1e12, bandwidth=1e11, encode_once=False)
    vision = sum(floor.vision_flops(shape, t)["linear"] + floor.vision_flops(shape, t)["attention"] for t in (1000, 400))
    assert once["vision_s"] == pytest.approx(vision / 1e12)
    assert each["vision_s"] > once["vision_s"] and each["prefill_s"] == once["prefill_s"]
    # Eight steps of decoding, two live sequences: each step reads the weights once and both KV caches.
    kv = shape.layers * 2 * shape.kv_dim * floor.BYTES
    steps = sum(max((shape.lm_params * 2 + kv * (1100 + s + 450 + s)) / 1e11, 2 * shape.lm_params * 2 / 1e12)
                for s in range(8))
    assert once["decode_s"] == pytest.approx(steps)


def test_prefill_of_a_cached_prefix_is_the_rest_of_the_causal_prefill(tiny):
    """Prefilling L tokens after S cached ones costs the whole prefill of L less that of S (linear and causal
    attention alike), and the floor with shared prefixes charges it to every later request of the same prefix."""
    folder, _, _ = tiny
    shape = floor.Shape.from_model(folder)
    whole, head = floor.prefill_flops(shape, 1100), floor.prefill_flops(shape, 1000)
    rest = floor.prefill_flops(shape, 1100, cached=1000)
    logits = 2 * shape.hidden * shape.vocab
    assert rest["linear"] == whole["linear"] - head["linear"] + logits
    assert rest["attention"] == whole["attention"] - head["attention"]
    reqs = [floor.RequestTokens("a.jpg", 900, 1100, 1, "sys|a", 1000),
            floor.RequestTokens("a.jpg", 900, 1050, 1, "sys|a", 1000),
            floor.RequestTokens("a.jpg", 900, 1200, 1, "other|a", 1010)]
    plain = floor.floor_seconds(shape, reqs, rate=1e12, bandwidth=1e11)
    shared = floor.floor_seconds(shape, reqs, rate=1e12, bandwidth=1e11, share_prefixes=True)
    # Only the second request shares a prefix: its first 992 tokens (62 whole blocks of 16) are cached.
    saved = sum(floor.prefill_flops(shape, 1050).values()) - sum(floor.prefill_flops(shape, 1050, cached=992).values())
    assert plain["prefill_s"] - shared["prefill_s"] == pytest.approx(saved / 1e12)
    assert shared["vision_s"] == plain["vision_s"] and shared["decode_s"] == plain["decode_s"]


def test_eval_floor_on_a_cpu_run(tiny, tmp_path):
    """The script on a finished CPU run: a row per call group, and no group faster than its floor."""
    import json
    import subprocess
    import sys

    from vida_eval.cli import main
    from vida_eval.data.synth import synthesize

    folder, _, _ = tiny
    release = synthesize(tmp_path / "release", images=1, bench_images=2, seed=3)
    run = tmp_path / "run"
    assert main(["eval", "--model", str(folder), "--bench", str(release), "--out", str(run), "--backend", "hf",
                 "--max-new-tokens", "8"]) == 0
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "eval_floor.py"), "--model", str(folder), "--bench",
                           str(release), "--out", str(run), "--run-only"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "floor.json").read_text())
    assert set(result["groups"]) == {"perception", "grounding", "description", "scoring"}
    for group, row in result["groups"].items():
        assert row["floor"]["total_s"] > 0 and row["times_floor"] > 1, (group, row)
        assert row["times_shared_prefix_floor"] >= row["times_floor"], (group, row)
        assert group in proc.stdout
