"""Load test of a running assistant through its front door (``make load``; nginx of ``make cluster``).

    python scripts/load.py [--url http://localhost:8080] [--visitors 50] [--seconds 120]

Each simulated visitor talks like a person (one message at a time, waiting for the answer): a few
questions about the article, then a consultation request (name, phone, call-back time, no email, a
reason, "yes"), then starts again as a new visitor until the time is up. Afterwards the
``consultation_requests`` table is read (``--db-url``, default from PGHOST/PGPORT/PGDATABASE/PGUSER/
PGPASSWORD as ``make cluster`` uses them) and every confirmed booking must be stored exactly once,
with what the visitor gave.

An error is any message without a 200 and a non-empty answer, or a booking step whose answer is not
the expected one. Prints the messages sent, errors, throughput (messages/s), median and 95th
percentile latency, confirmed bookings and stored rows; the exit status is 1 if anything was wrong.
``--json`` also prints the figures as one JSON line (the tests read it).

All simulated visitors come from this machine's address, which the abuse limits count as one client:
start the cluster with ``CLINIC_MAX_REQUESTS_PER_CLIENT=0`` for a load test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import aiohttp
import sqlalchemy as sa

QUESTIONS = [
    "what is fibromyalgia?", "what causes fibromyalgia", "what are the symptoms of fibromyalgia",
    "how is fibromyalgia diagnosed", "what is biofeedback?", "does acupuncture help?",
    "how is fibromyalgia treated", "tell me about massage therapy", "hi", "thanks",
]
FIRST_NAMES = ["Maria", "Ana", "Sam", "Lee", "Jordan", "Priya", "Chen", "Omar", "Grace", "Luis"]
LAST_NAMES = ["Lopez", "Ruiz", "Park", "Nguyen", "Smith", "Khan", "Okafor", "Rossi", "Silva", "Berg"]
TIMES = ["weekday mornings", "after 5 pm", "Tuesday afternoon", "any time"]


@dataclass
class Booking:
    sender: str
    name: str
    phone_digits: str  # 10 digits
    callback_time: str
    reason: str


@dataclass
class Figures:
    latencies: List[float] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    confirmed: List[Booking] = field(default_factory=list)


def booking_steps(booking: Booking) -> List[Tuple[str, str]]:
    """(message, a phrase its answer must contain) for one consultation request."""
    d = booking.phone_digits
    return [("I'd like to book a consultation", "name"),
            (booking.name, "phone number"),
            (f"({d[:3]}) {d[3:6]}-{d[6:]}", "good time"),
            (booking.callback_time, "email"),
            ("skip", "about"),
            (booking.reason, booking.name),
            ("yes", "will call you back")]


async def say(session: aiohttp.ClientSession, url: str, sender: str, text: str, figures: Figures) -> Optional[str]:
    """Sends one message; its answer as one string, or None (and an error noted)."""
    started = time.monotonic()
    try:
        async with session.post(url, json={"sender": sender, "message": text}) as response:
            body = await response.text()
            figures.latencies.append(time.monotonic() - started)
            if response.status != 200:
                figures.errors.append(f"HTTP {response.status}")
                return None
            answer = "\n".join(m.get("text") or "" for m in json.loads(body))
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        figures.errors.append(error.__class__.__name__)
        return None
    if not answer.strip():
        figures.errors.append("empty answer")
        return None
    return answer


def _letters(hex_digits: str) -> str:
    """A visitor's mark in letters: the form refuses a reason with a run of digits (it may be a number)."""
    return "".join(chr(ord("a") + int(digit, 16)) for digit in hex_digits)


async def visitor(session: aiohttp.ClientSession, url: str, deadline: float, figures: Figures,
                  rng: random.Random, questions: int) -> None:
    while time.monotonic() < deadline:
        sender = uuid.uuid4().hex
        for text in rng.sample(QUESTIONS, questions):
            await say(session, url, sender, text, figures)
        booking = Booking(sender=sender, name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                          phone_digits=f"310555{rng.randrange(10000):04d}", callback_time=rng.choice(TIMES),
                          reason=f"back pain, visit {_letters(sender[:6])}")
        for text, expected in booking_steps(booking):
            answer = await say(session, url, sender, text, figures)
            if answer is None:
                break
            if expected.lower() not in answer.lower():
                figures.errors.append(f"unexpected answer at {text!r}")
                break
        else:
            figures.confirmed.append(booking)


def stored(db_url: str, senders: List[str]) -> Dict[str, List[Dict[str, str]]]:
    """The stored requests of these visitors, by visitor (conversation ids may carry a channel prefix)."""
    engine = sa.create_engine(db_url, future=True)
    rows: Dict[str, List[Dict[str, str]]] = {}
    wanted = set(senders)
    with engine.connect() as connection:
        for row in connection.execute(sa.text(
                "SELECT conversation_id, name, phone, callback_time, reason FROM consultation_requests")).mappings():
            sender = row["conversation_id"][-32:]
            if sender in wanted:
                rows.setdefault(sender, []).append(dict(row))
    engine.dispose()
    return rows


def check_bookings(figures: Figures, db_url: str) -> Tuple[int, int, List[str]]:
    """(stored rows, duplicates, problems) for the confirmed bookings."""
    rows = stored(db_url, [b.sender for b in figures.confirmed])
    problems, duplicates = [], 0
    for booking in figures.confirmed:
        found = rows.get(booking.sender, [])
        duplicates += max(0, len(found) - 1)
        if not found:
            problems.append(f"{booking.sender}: confirmed but not stored")
        elif (found[0]["name"], found[0]["phone"], found[0]["callback_time"], found[0]["reason"]) != \
                (booking.name, "+1" + booking.phone_digits, booking.callback_time, booking.reason):
            problems.append(f"{booking.sender}: stored with other details")
    return sum(len(found) for found in rows.values()), duplicates, problems


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def default_db_url() -> str:
    env = os.environ
    return str(sa.engine.URL.create("postgresql", username=env.get("PGUSER", "postgres"),
                                    password=env.get("PGPASSWORD") or None, host=env.get("PGHOST", "127.0.0.1"),
                                    port=int(env.get("PGPORT", "5432")), database=env.get("PGDATABASE", "clinic")))


async def run(url: str, visitors: int, seconds: float, questions: int, seed: int) -> Tuple[Figures, float]:
    figures = Figures()
    timeout = aiohttp.ClientTimeout(total=150)
    connector = aiohttp.TCPConnector(limit=visitors)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(visitor(session, url.rstrip("/") + "/webhooks/rest/webhook", started + seconds,
                                       figures, random.Random(seed + n), questions) for n in range(visitors)))
    return figures, time.monotonic() - started


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LOAD_URL", "http://localhost:8080"))
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--questions", type=int, default=3, help="questions before each booking")
    parser.add_argument("--db-url", default=os.environ.get("LOAD_DB_URL") or default_db_url())
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    figures, elapsed = asyncio.run(run(args.url, args.visitors, args.seconds, args.questions, args.seed))
    rows, duplicates, problems = check_bookings(figures, args.db_url)
    result = {
        "visitors": args.visitors, "seconds": round(elapsed, 1), "messages": len(figures.latencies),
        "errors": len(figures.errors), "throughput": round(len(figures.latencies) / elapsed, 1),
        "p50_ms": round(percentile(figures.latencies, 0.5) * 1000), "p95_ms": round(percentile(figures.latencies, 0.95) * 1000),
        "confirmed": len(figures.confirmed), "stored": rows, "duplicates": duplicates, "problems": len(problems),
    }
    print(f"{result['visitors']} visitors for {result['seconds']} s through {args.url}: {result['messages']} messages, "
          f"{result['errors']} errors, {result['throughput']} messages/s, latency median {result['p50_ms']} ms, "
          f"95th percentile {result['p95_ms']} ms; bookings confirmed {result['confirmed']}, stored {rows}, "
          f"duplicates {duplicates}")
    for error in sorted(set(figures.errors))[:10]:
        print(f"  error: {error} (x{figures.errors.count(error)})")
    for problem in problems[:10]:
        print(f"  booking: {problem}")
    if args.json:
        print(json.dumps(result))
    ok = not figures.errors and not problems and duplicates == 0 and rows == len(figures.confirmed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
