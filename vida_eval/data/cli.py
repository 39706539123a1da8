"""``vida-eval data``: synthesize, check and prepare ViDA releases."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..records import InputError


def _bar(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None)


def cmd_synth(args) -> int:
    from .sizes import parse_sizes
    from .synth import synthesize

    bench = args.bench_images if args.bench_images is not None else max(4, args.images // 4)
    try:
        sizes = parse_sizes(args.sizes)
        train_sizes = parse_sizes(args.train_sizes) if args.train_sizes else None
    except ValueError as e:
        raise InputError(f"--sizes: {e}") from None
    start = time.perf_counter()
    with _bar(args.images + bench, "synthesizing") as bar:
        synthesize(args.out, images=args.images, bench_images=bench, seed=args.seed, progress=bar.update,
                   sizes=sizes, train_sizes=train_sizes)
    print(f"synthetic ViDA release ({args.images} train + {bench} bench images, seed {args.seed}, sizes "
          f"{args.sizes}) in {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _file_bar(path: Path):
    from tqdm import tqdm

    return tqdm(desc=path.name, unit="rec", disable=None, leave=False)


def _print_summary(summary: dict) -> int:
    from .image_check import frame_warnings

    recipe = summary.get("recipe")
    if recipe:
        print(f"lengths by {recipe['file']} (cutoff_len {recipe['cutoff_len']}, template {recipe['template']}, "
              f"image pixels {recipe['image_pixels'][0]}..{recipe['image_pixels'][1]}; {recipe['tokenizer']})")
    tokens = " tokens p50 / p99 / max" if recipe else ""
    print(f"{'dataset':<24}{'kept':>9}{'repaired':>10}{'rejected':>10}{tokens}")
    rejected = 0
    for name, r in summary.items():
        if name in ("images", "recipe"):
            continue
        t = r.get("tokens")
        lengths = f"   {t['p50']:>6} / {t['p99']:>6} / {t['max']:>6}" if t else ""
        print(f"{name:<24}{r['kept']:>9}{r['repaired']:>10}{r['rejected']:>10}{lengths}")
        for reason, n in list(r["rejections"].items())[:5]:
            print(f"    rejected {n:>6}: {reason}")
        for what, n in list(r["repairs"].items())[:5]:
            print(f"    repaired {n:>6}: {what}")
        for what, n in list(r["warnings"].items())[:5]:
            print(f"    warning  {n:>6}: {what}")
        if r.get("fatal"):
            print(f"    FATAL: {r['fatal']}")
        rejected += r["rejected"]
    for line in frame_warnings(summary["images"]):
        print(f"images: {line}")
    return rejected


def _recipe(args):
    if not args.recipe:
        return None
    from ..train.recipe import load_recipe

    return load_recipe(args.recipe)


def cmd_check(args) -> int:
    from .prepare import check_bench, prepare

    try:
        summary = prepare(args.path, None, verify_images=not args.no_verify, progress_factory=_file_bar,
                          recipe=_recipe(args))
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    rejected = _print_summary(summary)
    problems = check_bench(args.path)
    for p in problems[:50]:
        print(f"bench: {p}", file=sys.stderr)
    if len(problems) > 50:
        print(f"bench: ... {len(problems) - 50} more", file=sys.stderr)
    print(f"{rejected} records would be rejected; {len(problems)} bench problems")
    return 1 if rejected or problems else 0


def cmd_prepare(args) -> int:
    from .prepare import prepare

    try:
        summary = prepare(args.release, args.out, verify_images=not args.no_verify, progress_factory=_file_bar,
                          recipe=_recipe(args))
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    _print_summary(summary)
    print(f"LLaMA-Factory files in {args.out}; report {Path(args.out) / 'prepare_report.json'}; "
          f"rejects (with file, line and reason) in {Path(args.out) / 'rejects'}")
    return 0


RECIPE_HELP = ("a LLaMA-Factory training YAML: count each record's tokens as it will encode them and reject "
               "records over its cutoff_len")


def register(sub) -> None:
    p = sub.add_parser("data", help="synthesize, check and prepare ViDA data")
    dsub = p.add_subparsers(dest="data_command", required=True)

    sp = dsub.add_parser("synth", help="write a synthetic mini-ViDA release")
    sp.add_argument("out")
    sp.add_argument("--images", type=int, default=200, help="training images")
    sp.add_argument("--bench-images", type=int, default=None, help="bench images (default: images / 4)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--sizes", default="small",
                    help="image sizes: small (at most 640 px), vida-bench (the real bench's sizes; a bench of 476 "
                         "images takes each exactly as often), or WxH[,WxH...]")
    sp.add_argument("--train-sizes", help="training image sizes, same choices (default: --sizes)")
    sp.set_defaults(func=cmd_synth)

    sp = dsub.add_parser("check", help="validate a ViDA release without writing anything")
    sp.add_argument("path")
    sp.add_argument("--no-verify", action="store_true", help="check that images exist without decoding them")
    sp.add_argument("--recipe", help=RECIPE_HELP)
    sp.set_defaults(func=cmd_check)

    sp = dsub.add_parser("prepare", help="validate a release and write LLaMA-Factory datasets")
    sp.add_argument("--release", required=True, help="the release root (holding train/ and val/)")
    sp.add_argument("--out", default="data/vida", help="output folder inside the dataset_dir (default data/vida)")
    sp.add_argument("--no-verify", action="store_true", help="check that images exist without decoding them")
    sp.add_argument("--recipe", help=RECIPE_HELP)
    sp.set_defaults(func=cmd_prepare)



