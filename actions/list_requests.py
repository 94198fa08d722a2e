"""Lists consultation requests for the clinic's staff.

Usage: ``python -m actions.list_requests [--status new|contacted|closed] [--limit N] [--json]``
(or ``make requests ARGS="--json"``). Reads the same database as the assistant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from core.parsing import display_phone
from core.settings import ConfigError, database_url
from core.store import STATUSES, RequestStore

COLUMNS = ("id", "created_at", "status", "name", "phone", "callback_time", "email", "reason", "conversation_id")


def as_table(rows: List[Dict[str, Any]]) -> str:
    """The requests as an aligned text table."""
    cells = [[str(column) for column in COLUMNS]]
    for row in rows:
        shown = {**row, "phone": display_phone(row["phone"]),
                 "created_at": row["created_at"].strftime("%Y-%m-%d %H:%M") if row["created_at"] else ""}
        cells.append(["" if shown[column] is None else str(shown[column]) for column in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actions.list_requests", description="List consultation requests.")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        store = RequestStore(database_url())
        store.create_table()
        rows = store.list(status=args.status, limit=args.limit)
    except (ConfigError, SQLAlchemyError) as error:
        print(f"Cannot read the consultation requests: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    elif rows:
        print(as_table(rows))
    else:
        print("No consultation requests.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
