"""prepare --group-by-image: the questions about one image as conversations, nothing lost, turns in order."""

import json
from collections import Counter

import pytest

from vida_eval.cli import main
from vida_eval.data.grouping import CHOICES, IMAGE, TURN_ORDER, chunk_turns, group_by_image

from .conftest import ROOT, llamafactory_dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouping")
    assert main(["data", "synth", str(root / "release"), "--images", "6", "--bench-images", "2", "--seed", "5",
                 "--sizes", "320x240", "--questions-per-image", "45"]) == 0
    return root


def _subsets(folder):
    return {name: [json.loads(x) for x in (folder / f"{name}.jsonl").read_text().splitlines()]
            for name in TURN_ORDER}


def test_every_question_lands_once_in_a_conversation_about_its_image(prepared):
    out = prepared / "data" / "vida"
    assert main(["data", "prepare", "--release", str(prepared / "release"), "--out", str(out),
                 "--group-by-image", "10"]) == 0
    records = _subsets(out)
    convs = [json.loads(x) for x in (out / "vida_grouped.jsonl").read_text().splitlines()]
    by_id = {r["id"]: (name, r) for name, recs in records.items() for r in recs}
    seen = Counter()
    for conv in convs:
        ids = conv["id"].split("+")
        seen.update(ids)
        members = [by_id[i][1] for i in ids]
        assert len(ids) <= 10
        assert {tuple(m["images"]) for m in members} == {tuple(conv["images"])}
        assert {m.get("system") for m in members} == {conv.get("system")}
        order = [TURN_ORDER.index(by_id[i][0]) for i in ids]
        assert order == sorted(order)  # the answers that give most away come last
        humans, answers = conv["conversations"][0::2], conv["conversations"][1::2]
        assert humans[0]["value"].startswith(IMAGE) and all(IMAGE not in h["value"] for h in humans[1:])
        assert [a["value"] for a in answers] == [m["conversations"][1]["value"] for m in members]
        assert [h["value"] for h in humans[1:]] == [m["conversations"][0]["value"][len(IMAGE):].lstrip("\n")
                                                     for m in members[1:]]
    assert seen == Counter(list(by_id))  # each record exactly once
    assert len(convs) < len(by_id) / 4  # 45 questions per image: few conversations
    kinds = Counter(c.get("system") for c in convs)
    assert len(kinds) == 4  # grounding, default, description and scoring prompts never share one


def test_one_multiple_choice_question_per_conversation_and_it_comes_first(prepared, capsys):
    out = prepared / "data" / "vida_one_choice"
    assert main(["data", "prepare", "--release", str(prepared / "release"), "--out", str(out),
                 "--group-by-image", "45", "--choices-per-conversation", "1"]) == 0
    records = _subsets(out)
    subset = {r["id"]: name for name, recs in records.items() for r in recs}
    convs = [json.loads(x) for x in (out / "vida_grouped.jsonl").read_text().splitlines()]
    seen = Counter(i for c in convs for i in c["id"].split("+"))
    assert seen == Counter(list(subset))  # each record exactly once
    choices = [[subset[i] == CHOICES for i in c["id"].split("+")] for c in convs]
    assert all(sum(c) <= 1 for c in choices) and all(not any(c[1:]) for c in choices)  # one, and first
    assert sum(map(sum, choices)) == len(records[CHOICES]) > 2 * len({c["images"][0] for c in convs})
    assert any(c[0] and len(c) > 1 for c in choices)  # the image's other questions ride along after it
    assert main(["data", "prepare", "--release", str(prepared / "release"), "--out", str(out),
                 "--choices-per-conversation", "1"]) == 2
    assert "give K too" in capsys.readouterr().err


def test_multiple_choice_turns_are_dealt_first_and_the_rest_after_them():
    def rec(name, k):
        return name, {"id": f"{name}{k}", "images": ["a.jpg"], "conversations": [
            {"from": "human", "value": f"{IMAGE}\nq{k}"}, {"from": "gpt", "value": "a"}]}

    members = [rec(CHOICES, k) for k in range(5)] + [rec("vida_p_qa", k) for k in range(4)]
    chunks = chunk_turns(members, 3, 2)
    assert [[r["id"] for r in c] for c in chunks] == [
        ["vida_p_mcq0", "vida_p_mcq1", "vida_p_qa0"], ["vida_p_mcq2", "vida_p_mcq3", "vida_p_qa1"],
        ["vida_p_mcq4", "vida_p_qa2", "vida_p_qa3"]]
    assert [len(c) for c in chunk_turns(members, 2, 1)] == [2, 2, 2, 2, 1]  # 4 of the rest ride along, none left
    assert [len(c) for c in chunk_turns(members[:2] + members[5:], 2, 1)] == [2, 2, 2]  # 2 ride, 2 more after
    assert chunk_turns(members, 4) == [[r for _, r in members[i:i + 4]] for i in (0, 4, 8)]  # no limit: in order


def test_conversations_are_split_until_they_fit():
    recs = {"vida_p_mcq": [{"id": f"q{k}", "images": ["a.jpg"], "system": "s",
                            "conversations": [{"from": "human", "value": f"{IMAGE}\nquestion {k}"},
                                              {"from": "gpt", "value": "A."}]} for k in range(9)]}
    convs, counts = group_by_image(recs, 8, fits=lambda c: len(c["conversations"]) <= 6)
    assert sorted(len(c["conversations"]) // 2 for c in convs) == [1, 2, 2, 2, 2]  # 8 + 1, the 8 halved twice
    assert counts["split_to_fit_cutoff"] == 3
    assert sorted(i for c in convs for i in c["id"].split("+")) == sorted(f"q{k}" for k in range(9))


def test_records_that_cannot_merge_stay_as_they_are():
    two_turns = {"id": "t", "images": ["a.jpg"], "conversations": [
        {"from": "human", "value": f"{IMAGE}\nq"}, {"from": "gpt", "value": "a"},
        {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]}
    image_later = {"id": "l", "images": ["a.jpg"], "conversations": [
        {"from": "human", "value": f"q {IMAGE}"}, {"from": "gpt", "value": "a"}]}
    convs, _ = group_by_image({"vida_p_qa": [two_turns, image_later]}, 8)
    assert convs == [two_turns, image_later]


def test_grouped_conversations_fit_the_recipe_and_train_every_turn(prepared, workspace, tmp_path, monkeypatch):
    pytest.importorskip("llamafactory")
    monkeypatch.chdir(workspace)  # the recipe's model folder, as training would find it
    data = tmp_path / "data"
    out = data / "vida_grouped_check"
    recipe = ROOT / "configs" / "tiny_lora.yaml"
    assert main(["data", "prepare", "--release", str(prepared / "release"), "--out", str(out), "--recipe",
                 str(recipe), "--group-by-image", "45"]) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["grouped"]["split_to_fit_cutoff"] > 0  # 45 turns exceed the tiny recipe's 1,280 tokens
    info = json.loads((ROOT / "dataset_info.json").read_text())
    (data / "dataset_info.json").write_text(json.dumps(
        {"vida_grouped_check": dict(info["vida_grouped"], file_name="vida_grouped_check/vida_grouped.jsonl")}))
    ds, tok, _, _ = llamafactory_dataset(workspace, "vida_grouped_check", dataset_dir=str(data))
    convs = [json.loads(x) for x in (out / "vida_grouped.jsonl").read_text().splitlines()]
    assert len(ds) == len(convs)
    end = tok["tokenizer"].convert_tokens_to_ids("<|im_end|>")
    trained_turns = sum(sum(1 for t in row if t == end) for row in ds["labels"])
    assert trained_turns == sum(len(c["conversations"]) // 2 for c in convs)  # LLaMA-Factory cut no turn
