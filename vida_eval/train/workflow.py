"""``vida-eval train CONFIG [key=value ...]``: LLaMA-Factory's own training run, with the keys it does not have.

The YAML is a LLaMA-Factory recipe; our keys are taken out before LLaMA-Factory reads it:

- ``share_image_prefix: true``: samples about one image share one row (``shared_image``): LLaMA-Factory's SFT
  workflow runs with our collator and an image-grouped sampler in place of its own; everything else (model
  loading, LoRA, the trainer, logging, saving) is LLaMA-Factory's.
- ``share_image_max_len: N``: at most N tokens in a shared row (default: the recipe's cutoff_len).
- ``sdpa_cudnn: false``: scaled_dot_product_attention without its cuDNN kernels (PyTorch's flash and
  memory-efficient ones remain). cuDNN builds a plan on the host for every new sequence length, and ViDA's rows
  are all of different lengths; on an H200 the kernels left were slower than that planning costs (shared rows
  0.83x, conversations 0.88x; bench/RESULTS.md), so no shipped recipe sets it.
- ``answer_logits_only: true``: the vocabulary projection and the loss only at positions whose next token is
  supervised (``answer_logits``); same loss and gradients, without the logits of the prompt and image tokens.

A recipe without our keys runs exactly as ``llamafactory-cli train`` runs it. On a machine with several GPUs (or
with FORCE_TORCHRUN=1) the command starts itself once per GPU under torchrun, as ``llamafactory-cli`` does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from pathlib import Path

from ..records import InputError

OUR_KEYS = ("share_image_prefix", "share_image_max_len", "sdpa_cudnn", "answer_logits_only")


def read_config(path: str | Path, overrides: list[str]) -> dict:
    """The YAML merged with key=value overrides, as LLaMA-Factory's own command line reads them."""
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise InputError(f"{bad[0]!r}: overrides are key=value")
    try:
        cfg = OmegaConf.merge(OmegaConf.load(Path(path)), OmegaConf.from_cli(list(overrides)))
    except Exception as e:  # omegaconf's own error classes: a YAML it cannot read
        raise InputError(f"{path}: {e}") from e
    out = OmegaConf.to_container(cfg)
    if not isinstance(out, dict):
        raise InputError(f"{path}: not a mapping of keys to values")
    return out


def split_keys(config: dict) -> tuple[dict, dict]:
    """(LLaMA-Factory's keys, ours), with ours checked."""
    ours = {k: config[k] for k in OUR_KEYS if k in config}
    rest = {k: v for k, v in config.items() if k not in OUR_KEYS}
    if ours.get("share_image_prefix"):
        if rest.get("stage", "sft") != "sft":
            raise InputError(f"share_image_prefix applies to stage sft, not {rest['stage']}")
        if rest.get("packing") or rest.get("neat_packing"):
            raise InputError("share_image_prefix packs rows itself: leave packing and neat_packing off")
    max_len = ours.get("share_image_max_len")
    if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
        raise InputError(f"share_image_max_len: {max_len!r} is not a positive number of tokens")
    for key in ("sdpa_cudnn", "answer_logits_only"):
        if key in ours and not isinstance(ours[key], bool):
            raise InputError(f"{key}: {ours[key]!r} is not true or false")
    if ours.get("answer_logits_only") and rest.get("enable_liger_kernel"):
        raise InputError("answer_logits_only and enable_liger_kernel both replace the loss: keep one "
                         "(liger's fused loss never builds the logits at all)")
    return rest, ours


@contextlib.contextmanager
def shared_image_workflow(max_row_len: int):
    """LLaMA-Factory's SFT workflow with our collator and sampler in place of its own, for the block's length."""
    import torch
    from llamafactory.train.sft import workflow

    from .shared_image import ImageGroupedSampler, SharedImageCollator, encode_images_once, model_inputs

    base = workflow.CustomSeq2SeqTrainer

    class SharedImageTrainer(base):
        def _prepare_inputs(self, inputs):
            dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32
            return model_inputs(super()._prepare_inputs(inputs), dtype)

        def compute_loss(self, model, inputs, *args, **kwargs):
            # The vision tower runs here, outside the model's forward, so under the autocast accelerate gives that
            # forward: without it the float32 trained weights (LoRA, merger) meet the bf16 frozen ones unconverted.
            with self.accelerator.autocast():
                inputs = encode_images_once(self.accelerator.unwrap_model(model), inputs)
            return super().compute_loss(model, inputs, *args, **kwargs)

        def _get_train_sampler(self, train_dataset=None, *args, **kwargs):
            if self.finetuning_args.disable_shuffling:
                return super()._get_train_sampler(train_dataset, *args, **kwargs)
            return ImageGroupedSampler(train_dataset if train_dataset is not None else self.train_dataset,
                                       seed=self.args.seed)

    saved = workflow.SFTDataCollatorWith4DAttentionMask, workflow.CustomSeq2SeqTrainer
    workflow.SFTDataCollatorWith4DAttentionMask = functools.partial(SharedImageCollator, max_row_len=max_row_len)
    workflow.CustomSeq2SeqTrainer = SharedImageTrainer
    try:
        yield
    finally:
        workflow.SFTDataCollatorWith4DAttentionMask, workflow.CustomSeq2SeqTrainer = saved


def train(config: dict, callbacks: list | None = None) -> None:
    """Run LLaMA-Factory's training on *config* (a recipe with or without our keys), in this process."""
    from llamafactory.train.tuner import run_exp

    rest, ours = split_keys(config)
    if ours.get("sdpa_cudnn") is False:
        import torch

        torch.backends.cuda.enable_cudnn_sdp(False)
    with contextlib.ExitStack() as stack:
        if ours.get("answer_logits_only"):
            from .answer_logits import answer_logits_only

            stack.enter_context(answer_logits_only())
        if ours.get("share_image_prefix"):
            stack.enter_context(shared_image_workflow(
                int(ours.get("share_image_max_len") or rest.get("cutoff_len") or 0)))
        run_exp(rest, callbacks)


def torchrun_ranks() -> int | None:
    """The processes torchrun should start for this run, or None to train in this process: several GPUs, or
    FORCE_TORCHRUN=1 (then NPROC_PER_NODE, one by default), as ``llamafactory-cli`` decides."""
    if os.environ.get("LOCAL_RANK") is not None:
        return None  # already one of torchrun's processes
    forced = os.environ.get("FORCE_TORCHRUN", "0").lower() in ("1", "true")
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if gpus > 1 or forced:
        return int(os.environ.get("NPROC_PER_NODE", max(gpus, 1)))
    return None


def cmd_train(args) -> int:
    config = read_config(args.config, args.overrides)
    split_keys(config)  # refuse a bad key before torchrun starts the processes
    ranks = torchrun_ranks()
    if ranks is not None:
        # This environment's Python runs torchrun, so every rank runs this environment's packages.
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
               f"--master_port={os.environ.get('MASTER_PORT', '29500')}", "-m", "vida_eval", "train",
               str(args.config), *args.overrides]
        return subprocess.run(cmd, check=False).returncode
    train(config)
    return 0


def register(sub) -> None:
    from ..cli_args import existing_file

    sp = sub.add_parser("train", help="train with a LLaMA-Factory recipe, also one that shares each image's prefix")
    sp.add_argument("config", type=existing_file, help="the LLaMA-Factory training YAML")
    sp.add_argument("overrides", nargs="*", help="key=value pairs, as llamafactory-cli train takes them")
    sp.set_defaults(func=cmd_train)
