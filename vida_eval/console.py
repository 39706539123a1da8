"""What the commands print of a score report: the metric table and the diagnostics."""

from __future__ import annotations

import sys


def print_diagnostics(diags, limit: int = 30) -> None:
    zeroing = [d for d in diags if d.severity == "zeroes"]
    warnings = [d for d in diags if d.severity != "zeroes"]
    for d in (zeroing + warnings)[:limit]:
        print(str(d), file=sys.stderr)
    if len(diags) > limit:
        print(f"... {len(diags) - limit} more diagnostics (see the JSON output)", file=sys.stderr)


def print_table(report, file=None) -> None:
    file = file or sys.stdout
    official = report.official()
    lenient = report.counted_wrong()
    zeroed = {name for name, r in report.results.items() if r.zeroed}
    print(f"{'metric':<26}{'official':>12}{'flagged as wrong':>18}", file=file)
    print("-" * 56, file=file)
    for k, v in official.items():
        extra = f"{lenient[k]:>18.4f}" if (k in zeroed or (k == 'Final Score' and zeroed)) else ""
        print(f"{k:<26}{v:>12.4f}{extra}", file=file)
    if "Correlation" in report.results:
        d = report.results["Correlation"].details
        print(f"{'SRCC / PLCC / mean':<26}{d.get('SRCC', 0):>8.4f} {d.get('PLCC', 0):.4f} "
              f"{report.results['Correlation'].official:.4f}", file=file)
    if "Perception Accuracy" in report.results:
        pc = report.results["Perception Accuracy"].details["per_concern"]
        print("perception by concern: " + ", ".join(f"{k} {v:.4f}" for k, v in pc.items()), file=file)
