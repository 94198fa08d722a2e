"""The conversations export: CSV or JSON streamed row by row, redacted on request, and a file that fails
part-way says so."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import logging
from typing import Any, Callable, Dict, Iterator

from sqlalchemy.engine import Engine

from console import queries, redaction
from console.text import clean

logger = logging.getLogger(__name__)

MIMETYPES = {"csv": "text/csv", "json": "application/json"}
# The last line of an export that failed part-way (then the connection is cut).
EXPORT_FAILED = {"csv": "\nEXPORT FAILED: this file is incomplete\n",
                 "json": "\n], \"complete\": false, \"error\": \"export failed: this file is incomplete\"}\n"}
CSV_COLUMNS = ("conversation_id", "started_at", "topics", "fallback", "consultation", "emergency",
               "at", "speaker", "text", "intent", "confidence", "action")


def conversations(engine: Engine, filters: queries.Filters, fmt: str, redacted: bool, secret: str) -> Iterator[str]:
    """The filtered conversations as a CSV or JSON file, piece by piece; redacted, the texts lose phone numbers
    and addresses and the ids are keyed with ``secret`` (console.redaction)."""
    id_key = functools.partial(redaction.conversation_key, secret=secret)
    items = queries.export_conversations(engine, filters, redacted, id_key=id_key)
    return stream_csv(items) if fmt == "csv" else stream_json(items)


def filename(fmt: str, redacted: bool) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"conversations-{stamp}{'-redacted' if redacted else ''}.{fmt}"


def guarded(body: Iterator[str], fmt: str, failed: Callable[[Exception], None]) -> Iterator[str]:
    """``body``, ending with a line saying the file is incomplete if it fails part-way (then raising again).

    Headers (200) are sent before the first row: an export that fails part-way ends with a line saying so, and
    then the connection is cut without the end of the chunked body, so that no client takes a truncated file
    for a whole one. ``failed`` records the failure (audit); the log gets its type only."""
    try:
        yield from body
    except Exception as error:
        logger.error("export failed part-way (%s)", type(error).__name__)
        failed(error)
        yield EXPORT_FAILED[fmt]
        raise


def spreadsheet_safe(value: Any) -> Any:
    """A cell the CSV writer can write (no NUL: "need to escape") and a spreadsheet will not run as a formula."""
    if isinstance(value, str):
        value = clean(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


def stream_csv(items: Iterator[Dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        head = [item["conversation_id"], item["started_at"], " ".join(item["topics"]), item["fallback"],
                item["consultation"], item["emergency"]]
        for message in item["messages"] or [{}]:
            writer.writerow([spreadsheet_safe(value) for value in head + [
                message.get("at"), message.get("speaker"), message.get("text"), message.get("intent"),
                message.get("confidence"), message.get("action")]])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def stream_json(items: Iterator[Dict[str, Any]]) -> Iterator[str]:
    """``{"conversations": [...], "complete": true}``: a reader can tell a whole export from a cut one."""
    yield '{"conversations": ['
    first = True
    for item in items:
        yield ("" if first else ",") + "\n" + json.dumps(item, ensure_ascii=False)
        first = False
    yield '\n], "complete": true}\n'
