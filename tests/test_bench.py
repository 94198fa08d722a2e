"""A short real run of ``make bench``: both assistants start, take the load, and the table comes out.

No figure is checked (speed targets live in ``make bench`` itself); what is checked is that the harness
runs end to end against real servers and reports every row, with no failed message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts real servers

ROOT = Path(__file__).resolve().parent.parent
# The stock bot is trained once and kept (build/ is not committed); delete the folder to rebuild it. It is
# trained with 2 epochs (Rasa's default configuration otherwise): this tests the harness, not the figures,
# and saves minutes in a fresh clone.
STOCK = ROOT / "build" / "bench-stock-2-epochs"


@pytest.fixture(scope="module")
def table() -> str:
    run = subprocess.run([sys.executable, "-m", "bench", "--senders", "2", "--messages", "3", "--rounds", "2",
                          "--turns", "12", "--stock-dir", str(STOCK), "--stock-epochs", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_table_has_every_row(table: str) -> None:
    for row in ("throughput, 2 senders × 3 msgs", "each round", "p50 latency under load", "p95 latency",
                "p99 latency", "errors", "Rasa server RSS", "action server RSS", "time to ready",
                "turn 1,", "turn 10,", "p50 of turns 2–11"):
        assert row in table, row


def test_the_quick_stock_bot_is_named_in_the_table(table: str) -> None:
    assert "stock `rasa init` bot (2 epochs: not for figures)" in table
    assert "epochs: 2" in (STOCK / "config.yml").read_text()


def test_every_message_was_answered(table: str) -> None:
    """By the project; the quick stock bot (2 epochs) may leave a message unanswered (it predicts
    action_listen), which the table counts, so only its count is checked to be there."""
    errors = next(line for line in table.splitlines() if line.startswith("| errors"))
    project, stock = errors.split("|")[2:4]
    assert project == " 0 " and stock.strip().isdigit(), errors


def test_both_rounds_ran_for_both(table: str) -> None:
    rounds = next(line for line in table.splitlines() if "each round" in line)
    project, stock = rounds.split("|")[2:4]
    assert project.count("/") == 1 and stock.count("/") == 1, rounds
