"""Deletes old data: ``python -m console.retention --days N [--dry-run]``.

* conversations whose last event is older than N days (all their events in Rasa's ``events`` table, and the
  console's summaries of them);
* closed consultation requests received more than N days ago (and their status history).

Requests that are still ``new`` or ``contacted`` are kept, whatever their age. The run is recorded in the
audit log (actor ``retention``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Dict, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from console import db, summary
from core.settings import ConfigError, database_url
from core.store import consultation_requests, consultation_status_history, make_engine

BATCH = 500


def apply(engine: Engine, days: int, dry_run: bool = False, now: Optional[float] = None) -> Dict[str, int]:
    """Deletes what is older than ``days``; the numbers of conversations, events and requests deleted."""
    if days < 1:
        raise ValueError("days must be 1 or more")
    db.create_schema(engine)
    cutoff = (now or time.time()) - days * 86400
    e, r = db.events.c, consultation_requests.c
    counts = {"conversations": 0, "events": 0, "requests": 0}
    old_senders = []
    # A conversation whose consultation request is still open is kept (the staff may still need it).
    open_request = sa.exists().where(r.conversation_id == e.sender_id).where(r.status != "closed")
    if db.has_events(engine):
        with engine.connect() as connection:
            old_senders = [row[0] for row in connection.execute(
                sa.select(e.sender_id).where(~open_request).group_by(e.sender_id)
                .having(sa.func.max(e.timestamp) < cutoff))]
    counts["conversations"] = len(old_senders)
    cutoff_dt = dt.datetime.fromtimestamp(cutoff, dt.timezone.utc)
    closed = sa.select(r.id).where(r.status == "closed").where(r.created_at < cutoff_dt)
    with engine.connect() as connection:
        request_ids = [row[0] for row in connection.execute(closed)]
    counts["requests"] = len(request_ids)
    if dry_run:
        with engine.connect() as connection:
            for start in range(0, len(old_senders), BATCH):
                counts["events"] += connection.execute(
                    sa.select(sa.func.count()).select_from(db.events)
                    .where(e.sender_id.in_(old_senders[start:start + BATCH]))).scalar() or 0
        return counts
    # The delete checks again: a visitor who came back (or asked for a consultation) since the selection keeps
    # the whole conversation.
    recent = db.events.alias("recent")
    deleted = []
    for start in range(0, len(old_senders), BATCH):
        batch = old_senders[start:start + BATCH]
        came_back = sa.select(recent.c.sender_id).where(recent.c.sender_id.in_(batch)) \
            .where(recent.c.timestamp >= cutoff)
        with engine.begin() as connection:
            counts["events"] += connection.execute(
                db.events.delete().where(e.sender_id.in_(batch)).where(e.sender_id.not_in(came_back))
                .where(~open_request)).rowcount
            kept = {row[0] for row in connection.execute(
                sa.select(e.sender_id).where(e.sender_id.in_(batch)).distinct())}
        deleted += [sender for sender in batch if sender not in kept]
    counts["conversations"] = len(deleted)
    summary.forget(engine, deleted)
    with engine.begin() as connection:
        for start in range(0, len(request_ids), BATCH):
            batch = request_ids[start:start + BATCH]
            connection.execute(consultation_status_history.delete()
                               .where(consultation_status_history.c.request_id.in_(batch)))
            connection.execute(consultation_requests.delete().where(r.id.in_(batch)))
    db.write_audit(engine, "retention", "retention",
                   detail=f"older than {days} days: {counts['conversations']} conversations "
                          f"({counts['events']} events), {counts['requests']} closed requests deleted")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console.retention",
                                     description="Delete conversations and closed requests older than N days.")
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be 1 or more")
    try:
        counts = apply(make_engine(database_url()), args.days, args.dry_run)
    except (ConfigError, SQLAlchemyError) as error:
        print(f"Cannot use the database: {db.describe_error(error)}", file=sys.stderr)
        return 2
    verb = "Would delete" if args.dry_run else "Deleted"
    print(f"{verb} {counts['conversations']} conversations ({counts['events']} events) and "
          f"{counts['requests']} closed consultation requests older than {args.days} days.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
