"""``vida-eval data``: synthesize, check and prepare ViDA releases."""

from __future__ import annotations

import os
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
    from .synth_truth import DistortionMix

    bench = args.bench_images if args.bench_images is not None else max(4, args.images // 4)
    try:
        sizes = parse_sizes(args.sizes)
        train_sizes = parse_sizes(args.train_sizes) if args.train_sizes else None
    except ValueError as e:
        raise InputError(f"--sizes: {e}") from None
    types = tuple(t.strip() for t in args.types.split(",")) if args.types else DistortionMix.types
    try:
        mix = DistortionMix(types, args.most_distortions, args.repeat_share, args.global_share)
    except ValueError as e:
        raise InputError(f"--types / --most-distortions / --repeat-share / --global-share: {e}") from None
    start = time.perf_counter()
    with _bar(args.images + bench, "synthesizing") as bar:
        synthesize(args.out, images=args.images, bench_images=bench, seed=args.seed, progress=bar.update,
                   sizes=sizes, train_sizes=train_sizes, scenes=args.scenes, questions=args.questions_per_image,
                   mix=mix, choice_share=args.choice_share, workers=args.workers)
    print(f"synthetic ViDA release ({args.images} train + {bench} bench images, seed {args.seed}, sizes "
          f"{args.sizes}, {args.scenes}, at least {args.questions_per_image} questions per training image) in {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _file_bar(path: Path):
    from tqdm import tqdm

    return tqdm(desc=path.name, unit="rec", disable=None, leave=False)


def _print_summary(summary: dict) -> int:
    from .image_check import frame_warnings
    from .prepare import SUMMARY_KEYS

    recipe = summary.get("recipe")
    if recipe:
        print(f"lengths by {recipe['file']} (cutoff_len {recipe['cutoff_len']}, template {recipe['template']}, "
              f"image pixels {recipe['image_pixels'][0]}..{recipe['image_pixels'][1]}; {recipe['tokenizer']})")
    tokens = " tokens p50 / p99 / max" if recipe else ""
    fam = summary.get("family")
    if fam and fam["boxes"] != "relative":
        print(f"boxes for {fam['family']}: {fam['boxes']} pixels of each image as the recipe resizes it "
              f"(image pixels {fam['image_pixels'][0]}..{fam['image_pixels'][1]}, sides multiples of {fam['factor']})")
    held = summary.get("holdout")
    if held:
        print(f"held out: the {held['images']} images of {held['file']}")
    print(f"{'dataset':<24}{'kept':>9}{'repaired':>10}{'rejected':>10}{'held out':>10}{tokens}")
    rejected = 0
    for name, r in summary.items():
        if name in SUMMARY_KEYS:
            continue
        if r.get("missing"):
            print(f"{name:<24}  MISSING: {r['missing']}")
            continue
        t = r.get("tokens")
        lengths = f"   {t['p50']:>6} / {t['p99']:>6} / {t['max']:>6}" if t else ""
        print(f"{name:<24}{r['kept']:>9}{r['repaired']:>10}{r['rejected']:>10}{r['held_out']:>10}{lengths}")
        for reason, n in list(r["rejections"].items())[:5]:
            print(f"    rejected {n:>6}: {reason}")
        for what, n in list(r["repairs"].items())[:5]:
            print(f"    repaired {n:>6}: {what}")
        for what, n in list(r["warnings"].items())[:5]:
            print(f"    warning  {n:>6}: {what}")
        if r.get("fatal"):
            print(f"    FATAL: {r['fatal']}")
        rejected += r["rejected"]
    grouped = summary.get("grouped")
    if grouped:
        print(f"{'vida_grouped':<24}{grouped['conversations']:>9} conversations of the {grouped['records']} records, "
              f"at most {grouped['max_turns']} turns; {grouped['split_to_fit_cutoff']} split to fit cutoff_len")
    for line in frame_warnings(summary["images"]):
        print(f"images: {line}")
    for path in summary.get("removed", []):
        print(f"removed {path}: left by an earlier preparation, for a file this release lacks")
    return rejected


def _recipe(args):
    if not args.recipe:
        return None
    from ..train.recipe import load_recipe

    return load_recipe(args.recipe)


def cmd_check(args) -> int:
    from .bench_check import check_bench
    from .prepare import prepare

    if args.prepared and not args.exclude:  # a usage error: said before the release is read
        raise InputError("--prepared needs --exclude HOLDOUT.json: the images that must not be in training")
    summary = prepare(args.path, None, verify_images=not args.no_verify, progress_factory=_file_bar,
                      recipe=_recipe(args), exclude=args.exclude)
    rejected = _print_summary(summary)
    lost = _print_losses(summary)
    leaks = _print_leaks(args)
    problems = check_bench(args.path)
    for p in problems[:50]:
        print(f"bench: {p}", file=sys.stderr)
    if len(problems) > 50:
        print(f"bench: ... {len(problems) - 50} more", file=sys.stderr)
    print(f"{rejected} records would be rejected; {lost} training files missing or not read to the end; "
          f"{len(problems)} bench problems" + (f"; {leaks} prepared records about held-out images" if args.prepared
                                               else ""))
    return 1 if rejected or lost or problems or leaks else 0


def _print_leaks(args) -> int:
    """With --prepared and --exclude: the prepared records about held-out images (stderr); returns how many."""
    if not args.prepared:
        return 0
    from .holdout import held_out_images, leaks

    found = leaks(args.prepared, held_out_images(args.exclude))
    for file, n, example in found:
        print(f"ERROR: {file}: {n} records about held-out images (e.g. {example})", file=sys.stderr)
    return sum(n for _, n, _ in found)


def _print_losses(summary: dict) -> int:
    """Print what would lose whole files or their tails (stderr); returns how many."""
    from .prepare import problems_of

    lost = problems_of(summary)
    for line in lost:
        print(f"ERROR: {line}", file=sys.stderr)
    return len(lost)


def cmd_prepare(args) -> int:
    from ..models.families import get_family
    from .prepare import prepare

    if args.choices_per_conversation and not args.group_by_image:
        raise InputError("--choices-per-conversation limits the conversations of --group-by-image K: give K too")
    summary = prepare(args.release, args.out, verify_images=not args.no_verify, progress_factory=_file_bar,
                      recipe=_recipe(args), exclude=args.exclude,
                      family=get_family(args.family) if args.family else None, group_by_image=args.group_by_image,
                      choices_per_conversation=args.choices_per_conversation)
    _print_summary(summary)
    lost = _print_losses(summary)
    print(f"LLaMA-Factory files in {args.out}; report {Path(args.out) / 'prepare_report.json'}; "
          f"rejects (with file, line and reason) in {Path(args.out) / 'rejects'}")
    if lost:
        print(f"{lost} training files missing or not read to the end: their records are not in {args.out}",
              file=sys.stderr)
    return 1 if lost else 0


EXCLUDE_HELP = "a holdout.json of vida-eval data holdout (or its bench folder): leave its images out of training"
RECIPE_HELP = ("a LLaMA-Factory training YAML: count each record's tokens as it will encode them and reject "
               "records over its cutoff_len")


def cmd_holdout(args) -> int:
    from .holdout import HOLDOUT_FILE, carve

    carved = carve(args.release, args.images, args.out, seed=args.seed)
    print(f"{'stratum':<40}{'release':>9}{'holdout':>9}")
    for group in ("level", "distortion"):
        for key, (full, held) in carved.strata[group].items():
            print(f"{group + ' ' + key:<40}{full:>9}{held:>9}")
    for r in carved.rejected[:20]:
        where = f"{r['file']}:{r['line']}" if "line" in r else f"{r['file']} record {r.get('record', r.get('image'))}"
        print(f"rejected: {where}: {r['reason']}", file=sys.stderr)
    if len(carved.rejected) > 20:
        print(f"rejected: ... {len(carved.rejected) - 20} more (all in {Path(args.out) / HOLDOUT_FILE})", file=sys.stderr)
    c = carved.counts
    print(f"local bench in {args.out}: {c['images']} images, {c['mcq']} MCQs, {c['region_questions']} region "
          f"questions; {c['rejected']} records rejected. Train without it: vida-eval data prepare ... "
          f"--exclude {Path(args.out) / HOLDOUT_FILE}")
    return 0


def register(sub) -> None:
    from ..cli_args import existing_dir, existing_file, existing_path, non_negative_int, output_dir, positive_int, share
    from ..models.families import FAMILIES

    p = sub.add_parser("data", help="synthesize, check and prepare ViDA data")
    dsub = p.add_subparsers(dest="data_command", required=True)

    sp = dsub.add_parser("synth", help="write a synthetic mini-ViDA release")
    sp.add_argument("out", type=output_dir)
    sp.add_argument("--images", type=non_negative_int, default=200, help="training images")
    sp.add_argument("--bench-images", type=non_negative_int, default=None, help="bench images (default: images / 4)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--sizes", default="small",
                    help="image sizes: small (at most 640 px), vida-bench (the real bench's sizes; a bench of 476 "
                         "images takes each exactly as often), or WxH[,WxH...]")
    sp.add_argument("--train-sizes", help="training image sizes, same choices (default: --sizes)")
    sp.add_argument("--scenes", choices=("photos", "shapes"), default="photos",
                    help="photos: crops of public-domain photographs (textured, as user photos are); shapes: "
                         "gradients with shapes (the earlier scenes)")
    sp.add_argument("--questions-per-image", type=non_negative_int, default=0,
                    help="at least this many training records per image (the real release: 45); beyond one round "
                         "of the nine subsets (about 13), multiple-choice and region-perception questions (--choice-share)")
    sp.add_argument("--choice-share", type=share, default=0.5,
                    help="of the questions beyond one round, the share that are multiple-choice (the rest "
                         "region-perception; default 0.5)")
    sp.add_argument("--types", help="comma-separated distortion types to draw (default: all ten)")
    sp.add_argument("--most-distortions", type=int, default=3, help="distinct distortion types per image, at most "
                                                                      "(0..3, default 3)")
    sp.add_argument("--repeat-share", type=share, default=0.2,
                    help="share of distorted images whose first type also fills a second box (default 0.2)")
    sp.add_argument("--global-share", type=share, default=0.2,
                    help="share of the distortions that cover the whole image (default 0.2)")
    sp.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
                    help="processes drawing images (default: the CPU count, at most 8); any count writes the same "
                         "release")
    sp.set_defaults(func=cmd_synth)

    sp = dsub.add_parser("check", help="validate a ViDA release without writing anything")
    sp.add_argument("path", type=existing_dir)
    sp.add_argument("--no-verify", action="store_true", help="check that images exist without decoding them")
    sp.add_argument("--recipe", type=existing_file, help=RECIPE_HELP)
    sp.add_argument("--exclude", type=existing_path, help=EXCLUDE_HELP)
    sp.add_argument("--prepared", type=existing_dir,
                    help="a prepared folder (data prepare --out) to search for records about --exclude's images")
    sp.set_defaults(func=cmd_check)

    sp = dsub.add_parser("prepare", help="validate a release and write LLaMA-Factory datasets")
    sp.add_argument("--release", required=True, type=existing_dir, help="the release root (holding train/ and val/)")
    sp.add_argument("--out", default="data/vida", type=output_dir, help="output folder inside the dataset_dir (default data/vida)")
    sp.add_argument("--no-verify", action="store_true", help="check that images exist without decoding them")
    sp.add_argument("--recipe", type=existing_file, help=RECIPE_HELP)
    sp.add_argument("--exclude", type=existing_path, help=EXCLUDE_HELP)
    sp.add_argument("--family", choices=sorted(FAMILIES),
                    help="write boxes in this model family's convention (default: the --recipe model's, else "
                         "qwen2_vl, ViDA's own 0..1000); qwen2_5_vl needs --recipe for its pixel limits")
    sp.add_argument("--group-by-image", type=non_negative_int, default=0, metavar="K",
                    help="also write vida_grouped.jsonl: the questions about each image as conversations of at most "
                         "K turns (the image encoded once per conversation; later turns see earlier answers)")
    sp.add_argument("--choices-per-conversation", type=non_negative_int, default=0, metavar="M",
                    help="with --group-by-image: at most M multiple-choice questions per conversation, first "
                         "(1: none sees another's answer; default 0, no limit)")
    sp.set_defaults(func=cmd_prepare)

    sp = dsub.add_parser("holdout", help="carve a local ViDA-Bench, with ground truth, out of the training release")
    sp.add_argument("--release", required=True, type=existing_dir, help="the release root (holding train/)")
    sp.add_argument("--images", required=True, type=positive_int, help="training images to hold out")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, type=output_dir, help="the bench folder to write")
    sp.set_defaults(func=cmd_holdout)



