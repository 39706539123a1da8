"""``vida-eval preflight CONFIG``: what a training recipe needs of the machine, checked before it starts.

- cutoff_len: the largest ViDA-Bench image at the recipe's pixel limits plus the
  longest ViDA text must fit (``recipe`` says why a shorter cutoff kills the run).
- The family: the template is the model family's, and the prepared datasets
  hold boxes in its convention (``data.prepared``).
- Shared memory: LLaMA-Factory's data-loader workers hand each batch's float32
  pixels to the trainer through /dev/shm, 146 MiB for one 12-megapixel photo.
  When the workers of all ranks cannot get it, a worker fails to allocate and
  the trainer waits for its batch forever; this check fails first, with the
  size to ask for (containers: ``--ipc=host`` or ``--shm-size``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..data.sizes import VIDA_BENCH_SIZES
from .recipe import LONGEST_VIDA_TEXT_TOKENS, Recipe, load_recipe

GIB = 1 << 30


def cutoff_problem(recipe: Recipe, base: Path | None = None, largest=None) -> str | None:
    """Why *recipe*'s cutoff_len cannot hold the longest ViDA sample, or None (*largest*: the recipe's
    ``largest_image`` of ViDA-Bench's sizes, when already known)."""
    size, tokens = largest or recipe.largest_image(VIDA_BENCH_SIZES, base)
    need = tokens + LONGEST_VIDA_TEXT_TOKENS
    if recipe.cutoff_len < need:
        return (f"{recipe.path}: cutoff_len {recipe.cutoff_len} < {need} = {tokens} image tokens of a "
                f"{size[0]}x{size[1]} photo at image_max_pixels {recipe.image_max_pixels} + "
                f"{LONGEST_VIDA_TEXT_TOKENS} tokens of the longest ViDA text: LLaMA-Factory would cut the image "
                "tokens and the model's forward would fail")
    return None


def family_problems(recipe: Recipe, base: Path | None = None) -> list[str]:
    """The recipe's template against its model's family, and its prepared datasets' boxes against the family's
    convention (``data.prepared``)."""
    from ..data.prepared import recipe_data_problems

    family = recipe.family(base)
    problems = []
    if recipe.template != family.template:
        problems.append(f"{recipe.path}: template {recipe.template!r}, but {family.title} is trained with "
                        f"template {family.template!r} (its chat format)")
    return problems + recipe_data_problems(recipe, base)


def ranks_on_this_node() -> int:
    """Training processes that will share this machine's /dev/shm: NPROC_PER_NODE, else the visible GPUs."""
    if os.environ.get("NPROC_PER_NODE", "").isdigit():
        return max(1, int(os.environ["NPROC_PER_NODE"]))
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:
        return 1


def shared_memory_free(path: str = "/dev/shm") -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def shm_problem(recipe: Recipe, ranks: int, free: int | None, base: Path | None = None,
                largest=None) -> tuple[str | None, int]:
    """(why /dev/shm is too small for *ranks* ranks of *recipe*, or None; the bytes they need)."""
    _, tokens = largest or recipe.largest_image(VIDA_BENCH_SIZES, base)
    need = ranks * recipe.shared_memory_need(tokens)
    if need == 0 or (free is not None and free >= need):
        return None, need
    have = "no /dev/shm" if free is None else f"{free / GIB:.2f} GiB free in /dev/shm"
    return (f"{recipe.path}: its data loader needs up to {need / GIB:.1f} GiB of shared memory ({ranks} rank(s) x "
            f"{recipe.dataloader_workers} workers x 2 batches x {recipe.images_per_batch} images of up to {tokens} tokens, "
            f"float32 pixels) and this machine has {have}: a worker would fail to allocate and training would hang. "
            f"In a container, start it with --ipc=host or --shm-size={-(-need // GIB) + 1}g; elsewhere enlarge "
            "/dev/shm, or train with dataloader_num_workers=0 (slower)."), need


def cmd_preflight(args) -> int:
    recipe = load_recipe(args.config, args.overrides)
    problems = []
    largest = size, tokens = recipe.largest_image(VIDA_BENCH_SIZES)
    why = cutoff_problem(recipe, largest=largest)
    if why:
        problems.append(why)
    problems += family_problems(recipe)
    ranks = args.ranks or ranks_on_this_node()
    why, need = shm_problem(recipe, ranks, shared_memory_free(args.shm), largest=largest)
    if why:
        problems.append(why)
    print(f"{recipe.path}: cutoff_len {recipe.cutoff_len} (largest bench image {size[0]}x{size[1]} -> {tokens} "
          f"tokens + {LONGEST_VIDA_TEXT_TOKENS} text); shared memory for {ranks} rank(s): {need / GIB:.1f} GiB")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


def register(sub) -> None:
    from ..cli_args import existing_file, positive_int

    sp = sub.add_parser("preflight", help="check a training recipe against the machine before training")
    sp.add_argument("config", type=existing_file, help="the LLaMA-Factory training YAML")
    sp.add_argument("overrides", nargs="*", help="key=value pairs as given to llamafactory-cli train after it")
    sp.add_argument("--ranks", type=positive_int, help="training processes on this machine (default: NPROC_PER_NODE, "
                                              "else the visible GPUs)")
    sp.add_argument("--shm", default="/dev/shm", help="the shared-memory mount the data loader uses")
    sp.set_defaults(func=cmd_preflight)
