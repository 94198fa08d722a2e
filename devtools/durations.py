"""Per-file totals of a pytest run's ``--durations=0`` report: where the suite's time goes.

    python -m pytest tests --durations=0 > run.txt; python -m devtools.durations run.txt [before.txt]

Sums setup, call and teardown of every test by file (a module-scoped fixture's start-up counts in the file
whose first test set it up; the shared servers count in the first module that asked for them). With a
second report, prints both side by side (the first is "after", the second "before"). Under pytest-xdist the
figures are each worker's own time: their sum is more than the wall time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

LINE = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S+?\.py)(?:::|\s|$)")


def per_file(text: str) -> Dict[str, float]:
    """Seconds by test file, from the lines of a ``--durations`` report."""
    totals: Dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            # the console's tests moved to tests/console/ (tests/test_console_app.py is tests/console/test_app.py)
            totals[re.sub(r"^tests/test_console_", "tests/console/test_", match.group(3))] += float(match.group(1))
    return dict(totals)


def table(after: Dict[str, float], before: Optional[Dict[str, float]] = None) -> List[str]:
    def fmt(seconds: Optional[float]) -> str:
        return "–" if seconds is None else f"{seconds:.0f}"

    files = sorted(set(after) | set(before or {}), key=lambda name: -max(after.get(name, 0), (before or {}).get(name, 0)))
    if before is None:
        rows = ["| file | s |", "|---|---:|"] + [f"| `{name}` | {fmt(after[name])} |" for name in files]
        return rows + [f"| **total** | **{sum(after.values()):.0f}** |"]
    rows = ["| file | before, s | after, s |", "|---|---:|---:|"]
    rows += [f"| `{name}` | {fmt(before.get(name))} | {fmt(after.get(name))} |" for name in files]
    return rows + [f"| **total** | **{sum(before.values()):.0f}** | **{sum(after.values()):.0f}** |"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.durations", description=__doc__.split("\n\n")[0])
    parser.add_argument("after", type=Path, help="a pytest run's output with --durations=0")
    parser.add_argument("before", type=Path, nargs="?", help="an earlier run's, to compare")
    args = parser.parse_args(argv)
    after = per_file(args.after.read_text(errors="replace"))
    before = per_file(args.before.read_text(errors="replace")) if args.before else None
    print("\n".join(table(after, before)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
