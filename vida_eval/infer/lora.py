"""LoRA adapters for the vLLM backend: serve unmerged where vLLM can, merge once where it cannot.

vLLM applies an adapter's low-rank updates to the language model only. The challenge recipe's adapters
also train the vision blocks (LoRA on ``qkv``/``fc1``/...) and the whole merger (``modules_to_save``), which
vLLM refuses or cannot apply exactly. Such an adapter is merged into the base with PEFT (the same merge
as ``llamafactory-cli export`` and the hf backend) and the merged folder is served.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..records import InputError

# modules_to_save that vLLM accepts (classification heads).
VLLM_MODULES_TO_SAVE = {"classifier", "score"}
MERGE_RECORD = "vida_merged_from.json"


def adapter_config(adapter: str | Path) -> dict:
    """The adapter folder's adapter_config.json; InputError naming the file when it is missing or broken."""
    cfg = Path(adapter) / "adapter_config.json"
    try:
        return json.loads(cfg.read_text())
    except FileNotFoundError:
        raise InputError(f"{adapter}: no adapter_config.json (is it a PEFT LoRA adapter folder?)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg}: not valid JSON ({e})") from None


def _weight_names(adapter: str | Path) -> list[str]:
    path = Path(adapter) / "adapter_model.safetensors"
    if not path.is_file():
        return []
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return list(f.keys())


def vllm_unmerged_problem(adapter: str | Path) -> str | None:
    """Why vLLM cannot serve this adapter unmerged, or None when it can."""
    cfg = adapter_config(adapter)
    extra = sorted(set(cfg.get("modules_to_save") or []) - VLLM_MODULES_TO_SAVE)
    if extra:
        return f"it trains whole modules ({', '.join(extra)})"
    if cfg.get("use_dora"):
        return "it is a DoRA adapter"
    if any(".visual." in name for name in _weight_names(adapter)):
        return "it adapts the vision tower"
    return None


def merged_model(model: str, adapter: str, out_dir: str | Path) -> Path:
    """The base ``model`` with ``adapter`` merged in, written once to ``out_dir`` and reused after.

    ``out_dir`` records the fingerprint of the base and adapter it was made from; a folder made from other
    weights is rebuilt. The merge writes to a temporary folder first, so an interrupted merge leaves nothing
    that looks finished.
    """
    from ..models.fingerprint import model_fingerprint

    out_dir = Path(out_dir)
    want = model_fingerprint(model, adapter)
    record = out_dir / MERGE_RECORD
    if record.is_file() and json.loads(record.read_text()).get("fingerprint") == want:
        return out_dir
    try:
        from peft import PeftModel
    except ImportError:
        raise InputError("merging a LoRA adapter for vLLM needs peft: pip install 'peft>=0.18,<0.19'") from None
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):  # a merge killed before it could clean up
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        base = AutoModelForImageTextToText.from_pretrained(model, dtype="auto")
        merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
        merged.save_pretrained(tmp)
        AutoProcessor.from_pretrained(model).save_pretrained(tmp)  # tokenizer, chat template, image processor
        (tmp / MERGE_RECORD).write_text(json.dumps({"model": str(model), "adapter": str(adapter),
                                                    "fingerprint": want}, indent=1) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
