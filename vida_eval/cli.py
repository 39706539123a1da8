"""The ``vida-eval`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .cli_args import Parser, existing_dir, existing_file, existing_path, output_file
from .console import print_diagnostics, print_table
from .files import write_json
from .records import InputError, read_ground_truth, read_json_list, read_predictions

EXIT_UNUSABLE = 2


# ------------------------------------------------------------------- parse

def cmd_parse(args) -> int:
    from .parsing import parse_choice, parse_description, parse_grounding
    from .submission import question_type_of

    records = read_json_list(Path(args.input))
    problems = 0
    for i, r in enumerate(records):
        where = f"{args.input} record {i}" + (f" (id {r.get('id')!r})" if isinstance(r, dict) else "")
        if not isinstance(r, dict) or not isinstance(r.get("pred_ans"), str):
            print(f"{where}: no text pred_ans; left as it is", file=sys.stderr)
            problems += 1
            continue
        answer = r["pred_ans"]
        if args.task == "perception":
            choice = parse_choice(answer, r.get("candidates") or [])
            r["pred_option"] = choice.letter
            if choice.letter is None:
                print(f"{where}: {choice.problem}", file=sys.stderr)
                problems += 1
        elif args.task == "grounding":
            r.setdefault("question_type", question_type_of(r))
            r["distortions"] = parse_grounding(answer)
        else:
            r.update(parse_description(answer))
    write_json(args.output, records)
    print(f"parsed {len(records)} records of {args.input} -> {args.output} ({problems} without a parse)")
    return 0


# ------------------------------------------------------------------- score

def cmd_score(args) -> int:
    from .scoring import fill_parsed_fields, needed_ground_truth, score

    start = time.perf_counter()
    pred, notes = read_predictions(args.pred)
    gt = read_ground_truth(args.gt, needed_ground_truth(pred))
    for name, records in pred.items():
        fill_parsed_fields(name, records)
    report = score(pred, gt)
    from .scoring import Diagnostic

    report.notes.extend(Diagnostic("warning", str(args.pred), n) for n in notes)
    out = report.to_dict()
    if args.out:
        write_json(args.out, out)
    print_table(report)
    diags = report.diagnostics
    if diags:
        print(f"\n{len(diags)} diagnostics:", file=sys.stderr)
        print_diagnostics(diags)
    print(f"\nscored in {time.perf_counter() - start:.2f} s" + (f"; wrote {args.out}" if args.out else ""))
    return 0


# ------------------------------------------------------------------ submit

def cmd_submit(args) -> int:
    from .records import SUBMISSION_FILES
    from .submission import check_and_repair, write_submission

    files, notes = read_predictions(args.pred, SUBMISSION_FILES)
    diags = check_and_repair(files)
    for n in notes:
        print(f"WARNING: {n}", file=sys.stderr)
    print_diagnostics(diags)
    blocking = [d for d in diags if d.severity == "zeroes"]
    if blocking and not args.force:
        print(f"{len(blocking)} problems would make the official scorer return 0.0 for a metric; "
              "fix them or pass --force", file=sys.stderr)
        return 1
    out = write_submission(files, args.out)
    counts = ", ".join(f"{k} {len(v)}" for k, v in files.items())
    print(f"wrote {out} ({counts}; {len(diags)} diagnostics)")
    return 0


# -------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vida-eval", description="ViDA-Bench parsing, scoring, data and evaluation.")
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("parse", help="add parsed fields to a prediction file with raw pred_ans")
    sp.add_argument("--task", required=True, choices=("perception", "grounding", "description"))
    sp.add_argument("input", type=existing_file)
    sp.add_argument("output", type=output_file)
    sp.set_defaults(func=cmd_parse)

    sp = sub.add_parser("score", help="score a prediction folder or submission zip like the official scorer")
    sp.add_argument("--pred", required=True, type=existing_path,
                    help="folder or .zip with perception/grounding/description/scoring.json")
    sp.add_argument("--gt", required=True, type=existing_dir,
                    help="folder with mcq.json, reg-p_bench.json, bench_metadata.json")
    sp.add_argument("--out", type=output_file, help="write the scores as JSON here")
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("submit", help="validate prediction files and write submission.zip")
    sp.add_argument("--pred", required=True, type=existing_path, help="folder (or zip) with the prediction files")
    sp.add_argument("--out", required=True, type=output_file, help="the zip to write")
    sp.add_argument("--force", action="store_true", help="write the zip even when a metric would be zeroed")
    sp.set_defaults(func=cmd_submit)

    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands living in modules with heavier imports, registered lazily."""
    from . import commands

    return commands.REGISTER


def main(argv=None) -> int:
    """Run one command. Exit 0: done (diagnostics printed, if any); 1: done, and what it checked failed;
    2: an input or option that cannot be used, named on one line; 130: interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad option (2), its message already printed
        return e.code if isinstance(e.code, int) else EXIT_UNUSABLE
    try:
        return args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # the file system refused a read or write the checks could not foresee
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as e:
        if os.environ.get("VIDA_EVAL_TRACEBACK"):
            raise
        print(f"error: {type(e).__name__}: {e} (an unforeseen failure of vida-eval {args.command}; "
              "VIDA_EVAL_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
