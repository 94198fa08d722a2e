"""Measures the staff console's pages with 10,000 generated conversations, on SQLite and on PostgreSQL.

    PYTHONPATH=. .venv/bin/python scripts/bench_console.py [--conversations 10000] [--runs 5] [--only sqlite|postgres]

PostgreSQL: BENCH_PG_URL (default CLINIC_TEST_PG_URL, else postgresql://postgres@127.0.0.1:5432/test); the data
go into a schema of their own, dropped afterwards. Prints, for every page, the median and the slowest of
--runs requests (after one warm-up), and exits with status 1 if a page's median exceeds its target.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CONSOLE_SECRET_KEY", "bench-" + "x" * 40)

import sqlalchemy as sa  # noqa: E402

from console import auth, db, summary  # noqa: E402
from console.app import create_app  # noqa: E402
from console.links import conversation_key  # noqa: E402
from core.store import make_engine
from devtools import fake_conversations  # noqa: E402

PAGE_TARGET_MS = 300  # "under the time a person notices"
EXPORT_TARGET_MS = 10_000  # a full export of every conversation is a download, not a page
PG_URL = os.environ.get("BENCH_PG_URL") or os.environ.get("CLINIC_TEST_PG_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test")


def timed(call: Callable[[], object], runs: int) -> Tuple[float, float]:
    call()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def bench(url: str, count: int, runs: int) -> List[Tuple[str, float, float, float]]:
    engine = make_engine(url)
    started = time.perf_counter()
    senders = fake_conversations.generate(engine, count, days=90, seed=1)
    with engine.connect() as connection:
        events = connection.execute(sa.select(sa.func.count()).select_from(db.events)).scalar()
    print(f"  generated {count} conversations ({events} events) in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    app = create_app(url, {"TESTING": True})
    engine = app.extensions["console_engine"]
    started = time.perf_counter()
    summary.refresh(engine, force=True)
    print(f"  first summary build (all {count} conversations): {time.perf_counter() - started:.1f} s")
    auth.create_user(engine, "bench@clinic.example", "benchmark passphrase")
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    assert client.post("/login", data={"email": "bench@clinic.example", "password": "benchmark passphrase",
                                       "csrf_token": token}).status_code == 302
    with engine.connect() as connection:
        request_id = connection.execute(sa.text("select min(id) from consultation_requests")).scalar()
        last_day = connection.execute(sa.select(sa.func.max(db.conversations.c.started_day))).scalar()
    # a conversation in the middle of the list
    sender = senders[len(senders) // 2]

    def get(path: str) -> Callable[[], object]:
        def call():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response.get_data()
        return call

    def new_conversation() -> object:
        fake_conversations.generate(engine, 1, days=1, seed=int(time.time() * 1000) % 100000)
        return get("/conversations")()

    pages: List[Tuple[str, Callable[[], object], float]] = [
        ("conversations, page 1", get("/conversations"), PAGE_TARGET_MS),
        ("conversations, last page", get(f"/conversations?page={count // 50}"), PAGE_TARGET_MS),
        ("filter: flag fallback", get("/conversations?flag=fallback"), PAGE_TARGET_MS),
        ("filter: flag consultation", get("/conversations?flag=consultation"), PAGE_TARGET_MS),
        ("filter: topic", get("/conversations?topic=ask_symptoms"), PAGE_TARGET_MS),
        ("filter: free text", get("/conversations?q=water+therapy"), PAGE_TARGET_MS),
        ("filter: free text, no match", get("/conversations?q=zzzzzz"), PAGE_TARGET_MS),
        ("filter: one day", get(f"/conversations?date_from={last_day}&date_to={last_day}"), PAGE_TARGET_MS),
        ("filter: all four", get("/conversations?date_from=2000-01-01&flag=fallback&topic=ask_treatment&q=what"),
         PAGE_TARGET_MS),
        ("transcript", get(f"/conversations/{conversation_key(sender)}"), PAGE_TARGET_MS),
        ("requests", get("/requests"), PAGE_TARGET_MS),
        ("requests: new", get("/requests?status=new"), PAGE_TARGET_MS),
        ("insight (all 90 days)", get("/insight"), PAGE_TARGET_MS),
        ("insight: one topic", get("/insight?topic=ask_symptoms"), PAGE_TARGET_MS),
        ("audit log", get("/audit"), PAGE_TARGET_MS),
        ("list after 1 new conversation", new_conversation, PAGE_TARGET_MS),
        ("export CSV, one topic", get("/export.csv?topic=ask_symptoms&redact=1"), EXPORT_TARGET_MS),
        ("export JSON, all conversations", get("/export.json"), EXPORT_TARGET_MS),
    ]
    results = []
    for name, call, target in pages:
        median, slowest = timed(call, runs if target == PAGE_TARGET_MS else max(1, runs // 2))
        results.append((name, median, slowest, target))
    assert request_id is not None
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    failed = False
    backends = [args.only] if args.only else ["sqlite", "postgres"]
    for backend in backends:
        print(f"\n{backend}:")
        if backend == "sqlite":
            folder = tempfile.mkdtemp(prefix="bench-console-")
            results = bench(f"sqlite:///{folder}/conversations.db", args.conversations, args.runs)
        else:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(PG_URL, future=True)
            with admin.begin() as connection:
                connection.execute(sa.text(f'create schema "{schema}"'))
            try:
                results = bench(f"{PG_URL}?options=-csearch_path%3D{schema}", args.conversations, args.runs)
            finally:
                with admin.begin() as connection:
                    connection.execute(sa.text(f'drop schema "{schema}" cascade'))
                admin.dispose()
        print(f"  {'page':34} {'median ms':>10} {'max ms':>8} {'target':>8}")
        for name, median, slowest, target in results:
            verdict = "ok" if median <= target else "SLOW"
            failed |= median > target
            print(f"  {name:34} {median:10.1f} {slowest:8.1f} {target:8.0f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
