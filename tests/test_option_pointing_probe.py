"""bench/option_pointing_probe.py: the bench's type question without the image, and what a network learns of it."""

import importlib.util
import re

import numpy as np
import pytest

from vida_eval import prompts
from vida_eval.vocab import DISTORTION_TYPES

from .conftest import ROOT


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("option_pointing_probe", ROOT / "bench" / "option_pointing_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_draws_deal_the_present_type_and_three_absent_ones(probe):
    rng = np.random.default_rng(0)
    places = set()
    for _ in range(200):
        present, cands, k = probe.draw(rng)
        assert cands[k] == present and len(set(cands)) == 4 and set(cands) <= set(DISTORTION_TYPES)
        places.add(k)
    assert places == {0, 1, 2, 3}


def test_only_the_said_and_letter_prompts_carry_the_answer(probe, tmp_path):
    from transformers import AutoTokenizer

    from vida_eval.models.tiny import build_tiny_model

    def text(condition, present, cands):
        return tokenizer.decode(probe.prompt_ids(tokenizer, present, cands, condition))

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "model", weights=False))
    present, cands, k = probe.draw(np.random.default_rng(3))
    question = prompts.perception_question(probe.TYPE_QUESTION, cands)
    for condition in probe.CONDITIONS:
        assert question in text(condition, present, cands)
    assert f"The image shows: {present}." in text("said", present, cands)
    assert f"The answer is {prompts.OPTION_LETTERS[k]}." in text("letter", present, cands)
    assert "The image shows" not in text("silent", present, cands)
    assert "The answer is" not in text("silent", present, cands)


def test_a_network_learns_the_letter_to_copy_and_nothing_from_silence(probe, capsys):
    # The tiny preset: the copy condition must be learnt and the silent one must stay near chance, or the
    # probe's loss, answer position or draws are wrong.
    assert probe.main(["--preset", "tiny", "--steps", "200", "--every", "100", "--batch", "8", "--lr", "3e-3",
                       "--test", "64", "--conditions", "letter,silent", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(letter|silent)\s+([\d. ]+?)\s+(?:\d+|never)$", out, re.MULTILINE))
    assert float(rows["letter"].split()[-1]) >= 0.9
    assert float(rows["silent"].split()[-1]) <= 0.45
