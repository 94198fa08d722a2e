"""The SMS channel's latency next to REST's, on the real servers and a local stand-in for Twilio's API.

    .venv/bin/python -m tests.bench_channels [--rounds 10]

Starts the Rasa and action servers once (SQLite, every platform channel on, the API base URLs pointing
to tests/platforms.py's stand-in), then sends the same questions one by one as a signed Twilio webhook
and as a REST message, and prints the median and 90th percentile of each. The SMS figure includes the
gate's database work (delivery id, sender count, options) and the Messages API call. One machine, one
run: a figure, not a target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Optional

import requests

from devtools.servers import Servers, Visitor
from scripts import credentials
from tests.platforms import StandIn, twilio_form, twilio_signature
from tests.test_channel_e2e import SECRETS, TWILIO_WEBHOOK_URL

QUESTIONS = ["what is fibromyalgia", "what causes it", "is swimming good exercise for fibromyalgia", "1"]


def describe(name: str, seconds: List[float]) -> str:
    ordered = sorted(seconds)
    return (f"{name}: median {statistics.median(ordered) * 1000:.0f} ms, "
            f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:.0f} ms (n={len(ordered)})")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="times the four questions are asked")
    args = parser.parse_args(argv)
    standin = StandIn()
    folder = Path(tempfile.mkdtemp(prefix="bench-channels-"))
    path = folder / "credentials.yml"
    credentials.write(credentials.render(SECRETS), path)
    servers = Servers(folder, credentials=path,
                      env={**standin.env(), "CHANNEL_SENDER_MAX_MESSAGES": "100000"}).start()
    try:
        sms: List[float] = []
        rest: List[float] = []
        visitor = Visitor(servers)
        for question in QUESTIONS * args.rounds:
            form = twilio_form("+14245550199", question, "SM" + uuid.uuid4().hex)
            headers = {"X-Twilio-Signature": twilio_signature(SECRETS["TWILIO_AUTH_TOKEN"], TWILIO_WEBHOOK_URL, form)}
            start = time.perf_counter()
            requests.post(f"{servers.url}/webhooks/twilio/webhook", data=form, headers=headers,
                          timeout=60).raise_for_status()
            sms.append(time.perf_counter() - start)
            start = time.perf_counter()
            visitor.say(question)
            rest.append(time.perf_counter() - start)
        print(describe("SMS webhook (turn + Messages API call)", sms))
        print(describe("REST, the same questions", rest))
    finally:
        servers.stop()
        standin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
