"""Samples about one image in shared-prefix rows: the same loss and gradients as the samples one by one."""

import copy
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("llamafactory")

import torch

from vida_eval.train.shared_image import ImageGroupedSampler, Row, encode_images_once, model_inputs, plan_rows, row_mask

from .conftest import ROOT, llamafactory_dataset

IGNORE = -100
IMAGE = 9


def member(system: int, question: list[int], answer: list[int], image: str = "a.jpg") -> dict:
    ids = [1, system, 2, IMAGE, IMAGE, IMAGE, 3, *question, 4, *answer]
    return {"input_ids": ids, "labels": [IGNORE] * (len(ids) - len(answer)) + answer, "images": [image]}


# ------------------------------------------------------------- row planning

def test_members_share_a_row_only_with_the_same_image_and_system_prompt():
    a1, a2 = member(5, [10, 11], [20]), member(5, [10, 12, 13], [21, 22])
    b = member(6, [10, 11], [20])  # another system prompt, before the image: its own row
    c = member(5, [10, 11], [20], image="c.jpg")
    rows = plan_rows([a1, b, a2, c], IMAGE)
    assert [len(r.members) for r in rows] == [2, 1, 1]
    assert rows[0].members == [a1, a2]
    assert rows[0].prefix == 8  # the image and the shared first question token, not beyond
    assert rows[0].length == 8 + (11 - 8) + (13 - 8)
    assert [r.prefix for r in rows[1:]] == [0, 0]


def test_the_prefix_stops_before_the_first_trained_token():
    same = member(5, [10], [20, 21])
    rows = plan_rows([same, copy.deepcopy(same)], IMAGE)
    first_trained = same["labels"].index(20)
    assert rows[0].prefix == first_trained - 1  # its label is never trained, so no loss crosses members


def test_a_row_holds_at_most_max_len_tokens():
    members = [member(5, [10 + k, 11], [20, 21, 22]) for k in range(5)]
    rows = plan_rows(members, IMAGE, max_len=20)
    assert [len(r.members) for r in rows] == [2, 2, 1]
    assert all(r.length <= 20 for r in rows)
    assert [m for r in rows for m in r.members] == members


def test_row_mask_sees_the_prefix_and_its_own_segment():
    mask = row_mask(torch.tensor([[0, 0, 1, 1, 2, 2, -1]]), torch.float32)[0, 0] == 0
    assert mask[3].tolist() == [True, True, True, True, False, False, False]
    assert mask[4].tolist() == [True, True, False, False, True, False, False]
    assert mask[1].tolist() == [True, True, False, False, False, False, False]
    assert mask[6].tolist() == [False] * 6 + [True]  # padding sees only itself


def test_image_grouped_sampler_keeps_each_image_together():
    class Data:
        images = [["a"], ["b"], ["a"], ["c"], ["b"], ["a"]]

        def __getitem__(self, key):
            return self.images

        def __len__(self):
            return len(self.images)

    sampler = ImageGroupedSampler(Data(), seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(6))
    names = [Data.images[i][0] for i in order]
    assert len([n for k, n in enumerate(names) if k == 0 or names[k - 1] != n]) == 3  # one run per image
    assert order == list(ImageGroupedSampler(Data(), seed=3))
    orders = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) > 1


# ------------------------------------------- equivalence on the real model

@pytest.fixture(scope="module")
def lora_setup(workspace):
    """The tiny Qwen2-VL with LoRA on the language model and the vision blocks (float32, CPU), its template and
    tokenized samples of the prepared synthetic release, all through LLaMA-Factory's own loaders. The samples
    name their images relative to the workspace."""
    from llamafactory.model import load_model

    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        ds, tok, template, parsed = llamafactory_dataset(
            workspace, "vida_mini", lora_target="all", lora_rank=8, lora_dropout=0.0, freeze_vision_tower=False,
            output_dir=str(workspace / "out_shared"), max_samples=200, use_cpu=True, bf16=False)
        model = load_model(tok["tokenizer"], parsed[0], parsed[3], is_trainable=True).eval()
    finally:
        os.chdir(cwd)
    return model, template, tok, ds


def test_shared_rows_give_the_loss_and_lora_gradients_of_the_samples_one_by_one(lora_setup, workspace, monkeypatch):
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    from vida_eval.train.shared_image import SharedImageCollator

    monkeypatch.chdir(workspace)  # the samples name their images relative to it
    model, template, tok, ds = lora_setup
    by_image = {}
    for i, images in enumerate(ds["images"]):
        by_image.setdefault(tuple(images), []).append(i)
    first, second = sorted(by_image, key=lambda k: -len(by_image[k]))[:2]
    feats = [ds[i] for i in by_image[first][:7] + by_image[second][:5]]
    kw = dict(template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=IGNORE,
              attn_implementation="sdpa", compute_dtype=torch.float32, **tok)

    def grads():
        out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        return out

    # one by one: each sample alone through LLaMA-Factory's collator, the loss weighted by its trained tokens
    alone = SFTDataCollatorWith4DAttentionMask(**kw)
    trained = [sum(x != IGNORE for x in f["labels"][1:]) for f in feats]
    model.zero_grad()
    loss_alone = 0.0
    for f, n in zip(feats, trained):
        loss = model(**alone([copy.deepcopy(f)])).loss * n / sum(trained)
        loss.backward()
        loss_alone += loss.item()
    g_alone = grads()

    batch = model_inputs(SharedImageCollator(**kw)(copy.deepcopy(feats)), torch.float32)
    rows = batch["input_ids"].shape[0]
    assert rows < len(feats)  # rows shared
    assert batch["image_grid_thw"].shape[0] == 2 < rows  # each image encoded once, for all its rows
    assert batch["attention_mask"].shape[1:] == (1, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    assert (batch["labels"] != IGNORE).sum() == sum(trained)  # every trained token, once
    causal = {k: v for k, v in batch.items() if k != "attention_mask"}
    shared = model(**encode_images_once(model, batch)).loss
    shared.backward()
    g_shared = grads()

    assert abs(shared.item() - loss_alone) < 1e-5 * loss_alone
    assert g_alone.keys() == g_shared.keys()
    assert any("visual" in n for n in g_alone) and any("language_model" in n for n in g_alone)
    for name, g in g_alone.items():
        assert torch.allclose(g_shared[name], g, rtol=1e-4, atol=1e-5 * g.abs().max().item()), name

    # the mask is what makes it exact: plain causal attention across the members changes the loss
    with torch.no_grad():
        assert abs(model(**encode_images_once(model, causal)).loss.item() - loss_alone) > 1e-3


def test_answer_logits_only_gives_the_stock_loss_and_gradients(lora_setup, workspace, monkeypatch):
    """Logits at supervised positions only: the loss and every LoRA gradient of the stock forward, on a real batch
    (LLaMA-Factory's collator, images) and on shared rows, with and without num_items_in_batch."""
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask

    from vida_eval.train.answer_logits import answer_logits_only
    from vida_eval.train.shared_image import SharedImageCollator

    monkeypatch.chdir(workspace)
    model, template, tok, ds = lora_setup
    kw = dict(template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=IGNORE,
              attn_implementation="sdpa", compute_dtype=torch.float32, **tok)
    feats = [ds[i] for i in range(6)]
    plain = SFTDataCollatorWith4DAttentionMask(**kw)(copy.deepcopy(feats))
    shared = model_inputs(SharedImageCollator(**kw)(copy.deepcopy(feats)), torch.float32)

    def run(batch, **extra):
        model.zero_grad()
        out = model(**encode_images_once(model, copy.copy(batch)), **extra)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        return out, grads

    model.train()
    try:
        for batch in (plain, shared):
            for extra in ({}, {"num_items_in_batch": torch.tensor(37)}):
                stock, g_stock = run(batch, **extra)
                with answer_logits_only():
                    fast, g_fast = run(batch, **extra)
                length = batch["input_ids"].shape[1]
                assert stock.logits.shape[1] == length
                supervised = int((torch.nn.functional.pad(batch["labels"], (0, 1), value=IGNORE)[:, 1:] != IGNORE).sum())
                assert fast.logits.shape[:2] == (1, supervised) and supervised < batch["labels"].numel() / 3
                assert abs(fast.loss.item() - stock.loss.item()) < 1e-6 * stock.loss.item()
                assert g_fast.keys() == g_stock.keys() and any("visual" in n for n in g_fast)
                for name, g in g_stock.items():
                    assert torch.allclose(g_fast[name], g, rtol=1e-4, atol=1e-6 * g.abs().max().item()), name
        model.eval()
        with answer_logits_only(), torch.no_grad():  # evaluation keeps every position's logits
            assert model(**plain).logits.shape[1] == plain["input_ids"].shape[1]
    finally:
        model.eval()
    assert not getattr(type(model.get_base_model()).forward, "answer_logits_only", False)  # restored


def test_answer_logits_only_is_a_boolean_and_not_beside_liger():
    from vida_eval.records import InputError
    from vida_eval.train.workflow import split_keys

    assert split_keys({"answer_logits_only": True, "stage": "sft"}) == ({"stage": "sft"}, {"answer_logits_only": True})
    with pytest.raises(InputError, match="answer_logits_only: 'yes' is not true or false"):
        split_keys({"answer_logits_only": "yes"})
    with pytest.raises(InputError, match="keep one"):
        split_keys({"answer_logits_only": True, "enable_liger_kernel": True})


def test_a_row_of_one_member_is_the_member(lora_setup, workspace, monkeypatch):
    from vida_eval.train.shared_image import SharedImageCollator

    monkeypatch.chdir(workspace)  # the samples name their images relative to it
    model, template, tok, ds = lora_setup
    kw = dict(template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=IGNORE,
              attn_implementation="sdpa", compute_dtype=torch.float32, **tok)
    f = ds[0]
    batch = SharedImageCollator(**kw)([copy.deepcopy(f)])
    assert batch["input_ids"][0, : len(f["input_ids"])].tolist() == f["input_ids"]
    assert batch["labels"][0, : len(f["labels"])].tolist() == f["labels"]
    assert plan_rows([f], tok["tokenizer"].convert_tokens_to_ids("<|image_pad|>")) == [Row([f], 0)]


# ------------------------------------------------------- vida-eval train

def test_vida_eval_train_runs_a_shared_prefix_recipe(workspace):
    out = workspace / "saves" / "shared"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "vida_eval", "train", str(ROOT / "configs" / "tiny_lora.yaml"),
                           "share_image_prefix=true", "max_samples=32", "max_steps=3", "logging_steps=1",
                           f"output_dir={out}"], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [x["current_steps"] for x in log if "loss" in x] == [1, 2, 3]
    assert (out / "adapter_model.safetensors").exists()


def test_vida_eval_train_refuses_packing_with_shared_rows(workspace):
    proc = subprocess.run([sys.executable, "-m", "vida_eval", "train", str(ROOT / "configs" / "tiny_lora.yaml"),
                           "share_image_prefix=true", "packing=true"], cwd=workspace, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "leave packing and neat_packing off" in proc.stderr


def test_sdpa_cudnn_false_turns_cudnn_attention_off_before_llamafactory_runs(monkeypatch):
    import llamafactory.train.tuner as tuner

    from vida_eval.records import InputError
    from vida_eval.train.workflow import split_keys, train

    seen = []
    monkeypatch.setattr(tuner, "run_exp", lambda config, callbacks=None: seen.append(
        (dict(config), torch.backends.cuda.cudnn_sdp_enabled())))
    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        train({"stage": "sft", "sdpa_cudnn": True})
        train({"stage": "sft", "sdpa_cudnn": False})
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)
    assert seen == [({"stage": "sft"}, True), ({"stage": "sft"}, False)]  # our key never reaches LLaMA-Factory
    with pytest.raises(InputError, match="sdpa_cudnn: 'no' is not true or false"):
        split_keys({"sdpa_cudnn": "no"})


def test_images_encoded_once_train_in_bf16_beside_float32_trained_weights(workspace, tmp_path, monkeypatch):
    # As on a GPU: bf16 frozen weights, the trained merger and LoRA weights in float32 (LLaMA-Factory upcasts
    # them). The vision tower then runs outside the model's forward, so it needs the forward's autocast too.
    import vida_eval.train.shared_image as shared
    from vida_eval.train.workflow import train

    by_image: dict[str, list[str]] = {}
    for line in (workspace / "data" / "vida" / "vida_combined.jsonl").read_text().splitlines():
        by_image.setdefault(json.loads(line)["images"][0], []).append(line)
    two = sorted(by_image.values(), key=len)[-2:]
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "two_images.jsonl", "w", encoding="utf-8") as f:
        for line in (x for lines in two for x in lines[:6]):
            rec = json.loads(line)  # its image where this dataset_dir will find it
            rec["images"] = [str(workspace / "data" / x) for x in rec["images"]]
            f.write(json.dumps(rec) + "\n")
    info = json.loads((ROOT / "dataset_info.json").read_text())["vida_combined"]
    (data / "dataset_info.json").write_text(json.dumps({"two_images": {**info, "file_name": "two_images.jsonl"}}))
    once, calls = shared.encode_images_once, []

    def counted(model, inputs):
        calls.append((inputs.get("row_images") is not None, torch.is_autocast_enabled("cpu")))
        return once(model, inputs)

    monkeypatch.setattr(shared, "encode_images_once", counted)
    monkeypatch.chdir(workspace)
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "tiny_lora.yaml").read_text())
    config.update(share_image_prefix=True, share_image_max_len=400, dataset="two_images", dataset_dir=str(data),
                  per_device_train_batch_size=6, gradient_accumulation_steps=1, disable_shuffling=True,
                  max_steps=2, bf16=True, infer_dtype="bfloat16", output_dir=str(tmp_path / "out"),
                  logging_steps=1, save_strategy="no", report_to="none")
    train(config)
    assert calls == [(True, True)] * 2  # each step: one image in several rows, encoded once, under autocast
    log = [json.loads(x) for x in (tmp_path / "out" / "trainer_log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in log if "loss" in x)
