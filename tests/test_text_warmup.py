"""vida-eval tiny-textwarmup: multiple-choice records read from a prepared set, only the language model's weights
change, the held-out accuracy reported with and without the naming sentence, bad input named."""

import json

import numpy as np
import pytest

from vida_eval.models.text_warmup import TextWarmupArgs, multiple_choice_questions, prompt_text, text_warm_up
from vida_eval.records import InputError


def mcq(rid, answer="B.", options=("Noise", "Overexposure", "Motion blur")):
    lines = "\n".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(options))
    return {"id": rid, "conversations": [
        {"from": "human", "value": f"<image>\nWhich type of distortion appears in the image?\n{lines}\nAnswer with a "
                                   "single option's letter (A, B, C, ...) from the given choices directly."},
        {"from": "gpt", "value": answer}], "images": ["x.jpg"], "system": "You are a helpful assistant."}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_multiple_choice_questions_are_read_and_others_skipped(tmp_path):
    other = {"id": "r", "conversations": [{"from": "human", "value": "<image>\nWhat distortion affects this region?"},
                                          {"from": "gpt", "value": "No distortion affects this region."}]}
    qs = multiple_choice_questions(write(tmp_path / "d.jsonl", [mcq("a", "C."), other, mcq("b", "A")]))
    assert [(q.answer, q.candidates) for q in qs] == [(2, ("Noise", "Overexposure", "Motion blur")),
                                                      (0, ("Noise", "Overexposure", "Motion blur"))]
    assert qs[0].text.startswith("Which type") and "<image>" not in qs[0].text


def test_bad_records_are_named(tmp_path):
    with pytest.raises(InputError, match=r"d.jsonl line 2 \(id 'b'\): the answer 'D.' names no candidate"):
        multiple_choice_questions(write(tmp_path / "d.jsonl", [mcq("a"), mcq("b", "D.")]))
    (tmp_path / "e.jsonl").write_text(json.dumps(mcq("a")) + "\n{not json\n")
    with pytest.raises(InputError, match=r"e.jsonl line 2: not valid JSON"):
        multiple_choice_questions(tmp_path / "e.jsonl")
    with pytest.raises(InputError, match="no multiple-choice records"):
        multiple_choice_questions(write(tmp_path / "f.jsonl", [{"id": "x", "conversations": []}]))


def test_the_sentence_names_the_right_candidate_in_place_of_the_image(workspace):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(workspace / "models" / "tiny-qwen2vl")
    q = multiple_choice_questions(workspace / "data" / "vida_demo" / "vida_combined.jsonl")[0]
    with_sentence, without = prompt_text(tok, q, hint=True), prompt_text(tok, q, hint=False)
    assert f"<|im_start|>user\nThe image shows: {q.candidates[q.answer]}.\n{q.text}<|im_end|>" in with_sentence
    assert with_sentence.replace(f"The image shows: {q.candidates[q.answer]}.\n", "") == without
    assert without.endswith("<|im_start|>assistant\n")


def test_text_warmup_trains_only_the_language_model(workspace, tmp_path):
    from safetensors.torch import load_file

    source = workspace / "models" / "tiny-qwen2vl"
    data = workspace / "data" / "vida_demo" / "vida_combined.jsonl"
    report = text_warm_up(source, data, tmp_path / "warm", TextWarmupArgs(steps=12, batch=8, lr=3e-3, warmup_steps=2,
                                                                         held_out=0.2), log=lambda _: None)
    assert report["questions"] == len(multiple_choice_questions(data)) and report["held_out"] > 0
    assert report["last_loss"] < report["first_loss"]
    acc = report["held_out_accuracy"]
    assert set(acc) == {"with_sentence", "without_sentence", "chance"} and 0 < acc["chance"] < 1
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "warm" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed and not any("visual" in k for k in changed)
    assert any("embed_tokens" in k for k in changed) and any("layers.0." in k for k in changed)
    assert json.loads((tmp_path / "warm" / "vida_text_warmup.json").read_text())["held_out"] == report["held_out"]
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (tmp_path / "warm" / name).read_bytes() == (source / name).read_bytes()


def test_tiny_textwarmup_command(workspace, tmp_path, capsys):
    from vida_eval.cli import main

    model = str(workspace / "models" / "tiny-qwen2vl")
    data = workspace / "data" / "vida_demo" / "vida_combined.jsonl"
    assert main(["tiny-textwarmup", model, "--data", str(data), "--out", str(tmp_path / "w"), "--steps", "2",
                 "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "without it (chance" in out and (tmp_path / "w" / "model.safetensors").exists()
    assert main(["tiny-textwarmup", model, "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x")]) != 0
    assert "none.jsonl: no such file" in capsys.readouterr().err
