"""``make bench``: the project's assistant against a stock ``rasa init`` bot, on the same machine, in one run.

Usage: ``python -m bench [--senders 20] [--messages 20] [--rounds 3] [--turns 100] [--workers 1]
[--unpatched] [--stock-dir DIR]``.

Both assistants are started (alone, one after the other, to time how long each takes to be ready), warmed,
then each holds one conversation of ``--turns`` sequential messages (is a message at turn 100 as cheap as at
turn 1?), then they take alternating rounds of the same closed-loop load (``--senders`` concurrent senders ×
``--messages`` messages over REST). The machine may be busy with other work: the absolute figures are
noise, the ratios of one run are the result.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from bench import load, servers
from bench.servers import Assistant


def _ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def _ratio(mine: float, theirs: float) -> str:
    if not theirs or math.isnan(mine) or math.isnan(theirs):
        return "–"
    return f"{mine / theirs:.2f}×"


class Measured:
    """What the benchmark measured of one assistant."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.rounds: List[load.Result] = []
        self.turns: List[float] = []
        self.rasa_rss = 0.0
        self.actions_rss: Optional[float] = None

    @property
    def throughput(self) -> float:
        return load.median([r.throughput for r in self.rounds])

    @property
    def latencies(self) -> List[float]:
        return [latency for r in self.rounds for latency in r.latencies]

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    def turn(self, number: int) -> float:
        return self.turns[number - 1] if len(self.turns) >= number else float("nan")

    def turns_p50(self, first: int, last: int) -> float:
        values = [t for t in self.turns[first - 1:last] if not math.isnan(t)]
        return load.median(values)


def table(project: Measured, stock: Measured, args: argparse.Namespace) -> str:
    """The result as a Markdown table: one row per figure, the ratio project / stock in the last column."""
    rows = [
        (f"throughput, {args.senders} senders × {args.messages} msgs (median of {args.rounds} rounds), msg/s",
         f"{project.throughput:.1f}", f"{stock.throughput:.1f}", _ratio(project.throughput, stock.throughput)),
        ("  each round, msg/s", " / ".join(f"{r.throughput:.1f}" for r in project.rounds),
         " / ".join(f"{r.throughput:.1f}" for r in stock.rounds), ""),
    ]
    for q in (50, 95, 99):
        mine, theirs = load.percentile(project.latencies, q), load.percentile(stock.latencies, q)
        rows.append((f"p{q} latency under load, ms", _ms(mine), _ms(theirs), _ratio(mine, theirs)))
    rows.append(("errors (no answer or HTTP error)", str(project.errors), str(stock.errors), ""))
    rows.append(("Rasa server RSS after the load, MB", f"{project.rasa_rss:.0f}", f"{stock.rasa_rss:.0f}",
                 _ratio(project.rasa_rss, stock.rasa_rss)))
    rows.append(("action server RSS, MB", f"{project.actions_rss:.0f}" if project.actions_rss else "–",
                 "– (not needed)", ""))
    rows.append(("time to ready, s", f"{project.assistant.ready_s:.1f}", f"{stock.assistant.ready_s:.1f}",
                 _ratio(project.assistant.ready_s, stock.assistant.ready_s)))
    for number in (1, 10, 50, 100):
        if number <= args.turns:
            mine, theirs = project.turn(number), stock.turn(number)
            rows.append((f"one conversation: turn {number}, ms", _ms(mine), _ms(theirs), _ratio(mine, theirs)))
    if args.turns >= 11:
        early_p, early_s = project.turns_p50(2, 11), stock.turns_p50(2, 11)
        rows.append(("one conversation: p50 of turns 2–11, ms", _ms(early_p), _ms(early_s), _ratio(early_p, early_s)))
        if args.turns >= 100:
            late_p, late_s = project.turns_p50(91, 100), stock.turns_p50(91, 100)
            rows.append(("one conversation: p50 of turns 91–100, ms", _ms(late_p), _ms(late_s),
                         _ratio(late_p, late_s)))
            rows.append(("  turns 91–100 / turns 2–11 (own)", _ratio(late_p, early_p), _ratio(late_s, early_s), ""))
    header = ("", f"project ({args.workers} Rasa worker{'s' if args.workers > 1 else ''}, SQLite"
                  f"{', without the patches' if args.unpatched else ''})",
              "stock `rasa init` bot" + (f" ({args.stock_epochs} epochs: not for figures)" if args.stock_epochs else ""),
              "ratio")
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def warm(assistant: Assistant, messages: Sequence[str]) -> None:
    """A few conversations so that lazy imports, caches and connection pools are in place."""
    load.closed_loop(assistant.url, messages, senders=4, per_sender=len(messages) // 2)


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=20, help="concurrent senders (default 20)")
    parser.add_argument("--messages", type=int, default=20, help="messages per sender per round (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--turns", type=int, default=100, help="turns of the single conversation (default 100)")
    parser.add_argument("--workers", type=int, default=1, help="the project's Sanic workers (2 needs Redis)")
    parser.add_argument("--unpatched", action="store_true",
                        help="serve the project with Rasa as released (without rasa_ext.patches)")
    parser.add_argument("--stock-dir", type=Path,
                        help="reuse (or make) the stock bot in this folder instead of a temporary one")
    parser.add_argument("--stock-epochs", type=int,
                        help="train the stock bot with Rasa's default configuration written out with this many "
                             "epochs for each trained component instead of 100 (for the harness's own test: "
                             "its speed is not the stock bot's; never for figures)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        folder = Path(temp)
        stock_bot = args.stock_dir or folder / "stock-bot"
        print(f"Making the stock bot in {stock_bot} (rasa init, rasa train) …", file=sys.stderr, flush=True)
        servers.make_stock_bot(stock_bot, epochs=args.stock_epochs)
        (folder / "project").mkdir()
        (folder / "stock").mkdir()
        assistants: Dict[str, Measured] = {}
        started: List[Assistant] = []
        try:
            for name, make, messages in (
                    ("project", lambda: servers.project(folder / "project", workers=args.workers,
                                                     patched=not args.unpatched),
                     load.PROJECT_MESSAGES),
                    ("stock", lambda: servers.stock(stock_bot, folder / "stock", args.stock_epochs), load.STOCK_MESSAGES)):
                print(f"Starting the {name} assistant …", file=sys.stderr, flush=True)
                assistant = make()
                started.append(assistant)
                assistant.start()
                warm(assistant, messages)
                assistants[name] = Measured(assistant)
            project, stock = assistants["project"], assistants["stock"]
            for measured, messages in ((project, load.PROJECT_MESSAGES), (stock, load.STOCK_MESSAGES)):
                print(f"{measured.assistant.name}: one conversation of {args.turns} turns …", file=sys.stderr,
                      flush=True)
                measured.turns = load.one_conversation(measured.assistant.url, messages, args.turns)
            for number in range(args.rounds):
                # Alternate which one goes first, so that a slow spell of the machine hits both alike.
                order = [(project, load.PROJECT_MESSAGES), (stock, load.STOCK_MESSAGES)]
                for measured, messages in order if number % 2 == 0 else reversed(order):
                    print(f"round {number + 1}/{args.rounds}: {measured.assistant.name} …", file=sys.stderr,
                          flush=True)
                    measured.rounds.append(load.closed_loop(measured.assistant.url, messages, args.senders,
                                                            args.messages))
            project.rasa_rss = project.assistant.rss_mb("rasa")
            project.actions_rss = project.assistant.rss_mb("actions")
            stock.rasa_rss = stock.assistant.rss_mb("rasa")
        finally:
            for assistant in started:
                assistant.stop()
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {_cpus()} CPUs, load average "
          f"{_loadavg()} at the end\n")
    print(table(project, stock, args))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
