"""Real image sizes on the data side: token counts, recipes' cutoffs, prepare --recipe, preflight, synth sizes."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from vida_eval.cli import main
from vida_eval.data.layout import Release
from vida_eval.data.sizes import VIDA_BENCH_SIZES, parse_sizes
from vida_eval.data.synth import exact_sizes
from vida_eval.images import image_tokens, training_image_tokens
from vida_eval.train.preflight import cutoff_problem, shm_problem
from vida_eval.train.recipe import LONGEST_VIDA_TEXT_TOKENS, load_recipe

from .conftest import BASELINE, REAL_BENCH_SIZES, REAL_TRAIN_SIZES, ROOT

pytest.importorskip("transformers")

RECIPES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if "cutoff_len" in yaml.safe_load(p.read_text()))
CHALLENGE = ROOT / "configs" / "qwen2vl_lora.yaml"
# Sizes where rounding, the min / max pixel limits and LLaMA-Factory's own resize each decide the count.
AWKWARD = [(3120, 4160), (5488, 4112), (2988, 5312), (720, 1280), (193, 480), (640, 171), (221, 228), (28, 600)]


def _image(tmp_path, w, h):
    from PIL import Image

    path = tmp_path / f"{w}x{h}.png"
    Image.new("RGB", (w, h), (90, 120, 150)).save(path)
    return path


def test_token_counts_from_the_size_equal_the_processors(real_model, tmp_path):
    """The count from width and height alone equals what the real processor and LLaMA-Factory's plugin make."""
    from llamafactory.data.mm_plugin import get_mm_plugin
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(real_model)
    plugin = get_mm_plugin("qwen2_vl", image_token="<|image_pad|>")
    recipe = load_recipe(CHALLENGE)
    processor.image_max_pixels, processor.image_min_pixels = recipe.image_max_pixels, recipe.image_min_pixels
    for w, h in AWKWARD:
        path = _image(tmp_path, w, h)
        with Image.open(path) as im:
            grid = processor.image_processor([im.convert("RGB")], return_tensors="pt")["image_grid_thw"][0]
        assert int(grid.prod()) // 4 == image_tokens(w, h), (w, h)
        grid = plugin._get_mm_inputs([str(path)], [], [], processor)["image_grid_thw"][0]
        assert int(grid.prod()) // 4 == training_image_tokens(w, h, recipe.image_min_pixels,
                                                              recipe.image_max_pixels), (w, h)
    # The bench's own figures at the official limits and at the recipe's.
    official = [image_tokens(w, h) for (w, h), n in VIDA_BENCH_SIZES.items() for _ in range(n)]
    assert max(official) == 16320 and round(sum(official) / len(official)) == 2164
    assert recipe.largest_image(VIDA_BENCH_SIZES) == ((2988, 5312), 8228)


@pytest.mark.parametrize("config", RECIPES, ids=lambda p: p.name)
def test_every_recipe_holds_its_largest_image_and_the_longest_vida_text(config):
    recipe = load_recipe(config)
    assert cutoff_problem(recipe) is None
    short = load_recipe(config, [f"cutoff_len={recipe.cutoff_len - (recipe.cutoff_len - 1000) // 2}"])
    assert "would cut the image" in cutoff_problem(short)


def test_longest_vida_text_is_what_the_bench_descriptions_take():
    """LONGEST_VIDA_TEXT_TOKENS: the description prompt and the longest baseline description, through the template."""
    if not BASELINE.is_dir():
        pytest.skip("../shared/fixtures/mipi-baseline is absent")
    pytest.importorskip("llamafactory")
    from vida_eval import prompts
    from vida_eval.train.lengths import LengthCounter

    counter = LengthCounter(load_recipe(CHALLENGE))
    raw = json.loads((BASELINE / "raw" / "description_raw.json").read_text())
    longest = 0
    for r in raw:
        rec = {"conversations": [{"from": "human", "value": "<image>\n" + prompts.DESCRIPTION_USER},
                                 {"from": "gpt", "value": r["pred_ans"]}], "system": prompts.DESCRIPTION_SYSTEM}
        total, image = counter.count(rec, [(r["width"], r["height"])])
        longest = max(longest, total - image)
    assert longest == LONGEST_VIDA_TEXT_TOKENS


def _recipe_for(model, tmp_path, **changes) -> Path:
    """The challenge recipe's data settings on a local model folder (LLaMA-Factory needs one to tokenize)."""
    args = yaml.safe_load(CHALLENGE.read_text())
    args.update(model_name_or_path=str(model), **changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(args))
    return path


def test_recipe_lengths_equal_llamafactorys_tokenization(real_model, real_release, tmp_path, monkeypatch):
    """Every record's count from its image header equals the length LLaMA-Factory gives it, image pads included."""
    pytest.importorskip("llamafactory")
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    from vida_eval.data.prepare import prepare
    from vida_eval.train.lengths import LengthCounter

    recipe = load_recipe(_recipe_for(real_model, tmp_path))
    data = tmp_path / "data"
    summary = prepare(real_release, data / "vida", recipe=recipe)
    assert summary["vida_combined"]["rejected"] == 0
    shutil.copy(ROOT / "dataset_info.json", data / "dataset_info.json")
    records = [json.loads(x) for x in (data / "vida" / "vida_combined.jsonl").read_text().splitlines()]
    counter = LengthCounter(recipe)
    from PIL import Image

    def size(name):
        with Image.open(data / name) as im:
            return im.size

    expected = [counter.count(r, [size(n) for n in r["images"]]) for r in records]
    monkeypatch.chdir(tmp_path)
    args = {k: recipe.args[k] for k in ("template", "cutoff_len", "image_min_pixels", "image_max_pixels")}
    model_args, data_args, training_args, *_ = get_train_args(dict(
        model_name_or_path=str(real_model), stage="sft", do_train=True, finetuning_type="lora",
        dataset="vida_combined", dataset_dir="data", output_dir=str(tmp_path / "o"), overwrite_cache=True,
        preprocessing_num_workers=1, per_device_train_batch_size=1, report_to="none", **args))
    tok = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
    ds = get_dataset(template, model_args, data_args, training_args, "sft", **tok)["train_dataset"]
    pad = tok["tokenizer"].convert_tokens_to_ids("<|image_pad|>")
    got = [(len(row["input_ids"]), row["input_ids"].count(pad)) for row in ds]
    assert got == expected
    assert max(image for _, image in expected) == 8112  # the 3120x4160 photo, whole
    assess = [t for r, (t, _) in zip(records, expected) if r["id"].endswith("_assess")]
    assert summary["vida_d_assess"]["tokens"]["max"] == max(assess)


def test_prepare_recipe_rejects_overlong_records_by_file_and_line(real_release, tmp_path, capsys):
    recipe = _recipe_for("Qwen/Qwen2-VL-7B-Instruct", tmp_path, cutoff_len=8200)
    out = tmp_path / "data" / "vida"
    assert main(["data", "prepare", "--release", str(real_release), "--out", str(out), "--recipe", str(recipe)]) == 0
    printed = capsys.readouterr().out
    assert "cutoff_len 8200" in printed and "p50 / p99 / max" in printed
    report = json.loads((out / "prepare_report.json").read_text())
    assess = report["vida_d_assess"]
    source = Release(real_release).subset_file("vida_d_assess")
    assert assess["kept"] + assess["rejected"] == len(source.read_text().splitlines())
    assert assess["rejected"] == 1 and assess["tokens"]["max"] <= 8200  # the 3120x4160 description only
    assert report["vida_p_score"]["rejected"] == 0  # its short answers fit beside the same photo
    [reject] = [json.loads(x) for x in (out / "rejects" / "vida_d_assess.jsonl").read_text().splitlines()]
    assert reject["file"] == str(source) and reject["line"] >= 1
    tokens = int(reject["reason"].split()[0])
    assert tokens > 8200 and "(8112 of them image) exceed cutoff_len 8200" in reject["reason"]
    assert source.read_text().splitlines()[reject["line"] - 1] == json.dumps(reject["record"], ensure_ascii=False)
    assert report["recipe"]["tokenizer"].startswith("the Qwen2-VL tokenizer")
    assert main(["data", "check", str(real_release), "--recipe", str(recipe)]) == 1


def test_preflight_fails_without_the_shared_memory_the_loaders_need(tmp_path, capsys):
    recipe = load_recipe(CHALLENGE)
    why, need = shm_problem(recipe, 8, 64 << 20)
    assert need == 8 * 4 * 2 * 2 * 8228 * 4 * 1176 * 4  # ranks x workers x in flight x batch x float32 pixels
    assert "--shm-size=20g" in why and "--ipc=host" in why and "hang" in why
    assert shm_problem(recipe, 8, need)[0] is None
    assert shm_problem(load_recipe(CHALLENGE, ["dataloader_num_workers=0"]), 8, 0)[0] is None
    assert main(["preflight", str(CHALLENGE), "--ranks", "8", "--shm", str(tmp_path / "none")]) == 1
    assert "--shm-size" in capsys.readouterr().err
    big = tmp_path / "shm"
    big.mkdir()
    assert main(["preflight", str(ROOT / "configs" / "tiny_lora.yaml"), "--ranks", "1", "--shm", str(big)]) == 0


def test_synth_draws_the_real_bench_sizes(tmp_path):
    order = exact_sizes(3, 476, VIDA_BENCH_SIZES)
    assert Counter(order) == Counter(VIDA_BENCH_SIZES) and order != exact_sizes(4, 476, VIDA_BENCH_SIZES)
    assert exact_sizes(3, 10, VIDA_BENCH_SIZES) == [None] * 10  # fewer images: each draws by weight
    assert parse_sizes("640x480,3120x4160") == [(640, 480), (3120, 4160)]
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_sizes("big")
    assert main(["data", "synth", str(tmp_path / "r"), "--images", "2", "--bench-images", "6",
                 "--sizes", "vida-bench", "--train-sizes", "small"]) == 0
    assert main(["data", "synth", str(tmp_path / "bad"), "--sizes", "0x5"]) == 2
    from PIL import Image

    release = Release(tmp_path / "r")
    for b in json.loads((release.bench_release / "benchmark.json").read_text()):
        assert (b["width"], b["height"]) in VIDA_BENCH_SIZES
        with Image.open(release.val_images / b["image"]) as im:
            assert im.size == (b["width"], b["height"])


def test_the_real_size_release_has_the_sizes_asked_for(real_release):
    release = Release(real_release)
    meta = json.loads(release.train_metadata.read_text())
    assert Counter((m["width"], m["height"]) for m in meta) == Counter(REAL_TRAIN_SIZES)
    bench = json.loads((release.bench_release / "benchmark.json").read_text())
    assert Counter((b["width"], b["height"]) for b in bench) == Counter(REAL_BENCH_SIZES)


def test_prepare_reports_exif_tags_and_sizes_from_another_frame(real_release, tmp_path):
    from vida_eval.data.prepare import prepare

    from .conftest import tag_orientation

    copy = tmp_path / "release"
    shutil.copytree(real_release, copy)
    release = Release(copy)
    meta = json.loads(release.train_metadata.read_text())
    jpegs = [m for m in meta if m["image"].endswith(".jpg")]
    assert len(jpegs) >= 2
    for m in jpegs[:2]:
        tag_orientation(release.train_images / m["image"])
    jpegs[0]["width"], jpegs[0]["height"] = jpegs[0]["height"], jpegs[0]["width"]  # annotated as displayed
    release.train_metadata.write_text(json.dumps(meta))
    report = prepare(copy, None)["images"]
    assert report["exif_orientation_tags"] == {"6": 2} and report["exif_rotated"] == 2
    sizes = report["metadata_sizes"]
    assert (sizes["compared"], sizes["match_stored"], sizes["match_displayed_frame"]) == (len(meta), len(meta) - 1, 1)
    assert jpegs[0]["image"] in sizes["examples"][0] and "EXIF orientation 6" in sizes["examples"][0]
