"""vida-eval tiny-warmup: dense targets from the release's boxes, only the tower's weights change, bad input named."""

import json
import shutil

import numpy as np
import pytest

from vida_eval.models.warmup import WarmupArgs, read_training_boxes, roc_auc, token_targets, warm_up
from vida_eval.records import InputError
from vida_eval.vocab import DISTORTION_TYPES


def test_token_targets_follow_the_boxes_and_the_severity():
    # 8 x 12 patches: 4 rows x 6 columns of merged tokens, each 250 x 166.7 of the 0..1000 frame.
    boxes = [{"distortion": "Noise", "severity": "Slight", "coordinates": [0, 0, 500, 1000]},
             {"distortion": "Noise", "severity": "Severe", "coordinates": [0, 0, 1000, 250]},
             {"distortion": "Overexposure", "severity": "Moderate", "coordinates": [500, 500, 1000, 1000]}]
    t = token_targets([1, 8, 12], boxes, 2).reshape(4, 6, len(DISTORTION_TYPES))
    noise, over = DISTORTION_TYPES.index("Noise"), DISTORTION_TYPES.index("Overexposure")
    assert np.allclose(t[0, :, noise], 1.0)                    # the severe box wins where both hold the token
    assert np.allclose(t[1:, :3, noise], 1 / 3) and np.allclose(t[1:, 3:, noise], 0)
    assert np.allclose(t[2:, 3:, over], 2 / 3) and np.allclose(t[:2, :, over], 0) and np.allclose(t[:, :3, over], 0)
    others = [k for k in range(len(DISTORTION_TYPES)) if k not in (noise, over)]
    assert not t[..., others].any()
    assert not token_targets([1, 8, 12], [], 2).any()


def test_roc_auc():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert roc_auc(np.array([0.9, 0.2, 0.8, 0.1]), np.array([True, False, False, True])) == 0.5
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([False, False])))


def test_warmup_trains_only_the_tower(workspace, tmp_path):
    from safetensors.torch import load_file

    source = workspace / "models" / "tiny-qwen2vl"
    report = warm_up(source, workspace / "release", tmp_path / "warm",
                     WarmupArgs(steps=12, batch=4, lr=3e-3, warmup_steps=2, held_out=0.25, workers=1), log=lambda _: None)
    assert report["images"] == 40 and report["held_out"] == 10
    assert report["last_loss"] < report["first_loss"]
    assert set(report["held_out_auc"]) == set(DISTORTION_TYPES)
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "warm" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed and all("visual" in k for k in changed)
    assert any("merger" in k for k in changed) and any("patch_embed" in k for k in changed)
    assert json.loads((tmp_path / "warm" / "vida_warmup.json").read_text())["images"] == 40
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json", "chat_template.jinja"):
        assert (tmp_path / "warm" / name).read_bytes() == (source / name).read_bytes()


def test_bad_training_metadata_is_named(workspace, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(workspace / "release" / "train", release / "train")
    path = release / "train" / "train_metadata.json"
    records = json.loads(path.read_text())
    records[3]["distortions"] = [{"distortion": "Glare", "severity": "Slight", "coordinates": [0, 0, 9, 9]}]
    path.write_text(json.dumps(records))
    with pytest.raises(InputError, match=r"train_metadata.json record 3 .*Glare"):
        read_training_boxes(release)
    records[3] = {"image": "missing.jpg", "distortions": []}
    path.write_text(json.dumps(records))
    with pytest.raises(InputError, match=r"record 3: image 'missing.jpg' not found"):
        read_training_boxes(release)
    path.unlink()
    with pytest.raises(InputError, match="no training metadata"):
        read_training_boxes(release)


def test_tiny_warmup_command(workspace, tmp_path, capsys):
    from vida_eval.cli import main

    out = tmp_path / "warm"
    assert main(["tiny-warmup", str(workspace / "models" / "tiny-qwen2vl"), "--release", str(workspace / "release"),
                 "--out", str(out), "--steps", "3", "--batch", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "40 images encoded" in printed and "held-out token AUC per type (2 images" in printed
    assert (out / "model.safetensors").is_file() and not (tmp_path / "warm.partial").exists()
    assert main(["tiny-warmup", str(workspace / "models" / "tiny-qwen2vl"), "--release", str(tmp_path),
                 "--out", str(tmp_path / "none")]) == 2
    assert "no training metadata" in capsys.readouterr().err
    assert main(["tiny-warmup", str(workspace / "models" / "tiny-qwen2vl"), "--release", str(workspace / "release"),
                 "--out", str(tmp_path / "none"), "--held-out", "1"]) == 2
    assert "keep a share below 1" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
