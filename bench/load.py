"""Closed-loop load over Rasa's REST channel: each sender sends its next message when the previous one
is answered, so throughput is what the server sustains, not what the client offers."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import List, Sequence

import requests

# Realistic mixed questions for the clinic's assistant (greetings, the article's topics, the clinic,
# small talk); none starts the consultation form, so every conversation stays in the same state machine.
PROJECT_MESSAGES = [
    "hi there",
    "What is fibromyalgia?",
    "what are the symptoms of fibro",
    "does anyone actually know the reason fibro happens",
    "who usually gets fibromyalgia?",
    "is fibromyalgia related to arthritis or lupus",
    "why does my lower back hurt so much",
    "what treatments do you offer for fibromyalgia",
    "do you combine medication with physical therapy?",
    "will I need surgery for my back",
    "where is the clinic",
    "who are the doctors there",
    "what is your phone number",
    "do you take insurance",
    "how much does a visit cost",
    "what are your opening hours",
    "are you a bot?",
    "what can you help me with",
    "thanks a lot",
    "bye",
]

# The stock ``rasa init`` bot's own training examples.
STOCK_MESSAGES = [
    "hey", "hello", "good morning", "goodbye", "see you later", "yes", "indeed", "no", "never",
    "perfect", "great", "amazing", "I am feeling very good", "my day was horrible", "I am sad",
    "I don't feel very well", "are you a bot?", "am I talking to a human?", "I am great", "not good",
]


@dataclass
class Result:
    """Latencies (seconds) of the answered messages, the errors, and the wall time of one load run."""

    latencies: List[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def send(session: requests.Session, url: str, sender: str, text: str) -> bool:
    """Sends one message; whether the assistant answered it (HTTP 2xx with at least one message)."""
    try:
        response = session.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                                timeout=60)
        return response.ok and bool(response.json())
    except (requests.RequestException, ValueError):
        return False


def closed_loop(url: str, messages: Sequence[str], senders: int, per_sender: int) -> Result:
    """``senders`` threads, each a new conversation sending ``per_sender`` messages back to back."""
    result = Result()
    lock = threading.Lock()
    start = threading.Barrier(senders + 1)

    def run(index: int) -> None:
        sender = uuid.uuid4().hex
        with requests.Session() as session:
            start.wait()
            for turn in range(per_sender):
                text = messages[(index + turn) % len(messages)]
                began = time.perf_counter()
                ok = send(session, url, sender, text)
                elapsed = time.perf_counter() - began
                with lock:
                    if ok:
                        result.latencies.append(elapsed)
                    else:
                        result.errors += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(senders)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - began
    return result


def one_conversation(url: str, messages: Sequence[str], turns: int) -> List[float]:
    """Latency of each turn of one conversation of ``turns`` sequential messages (NaN for a failed turn)."""
    sender = uuid.uuid4().hex
    latencies = []
    with requests.Session() as session:
        for turn in range(turns):
            began = time.perf_counter()
            ok = send(session, url, sender, messages[turn % len(messages)])
            latencies.append(time.perf_counter() - began if ok else float("nan"))
    return latencies
