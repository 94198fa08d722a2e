"""Where a message's time goes, in-process: ``python -m bench.profile [--turns 100] [--at 5 100] [--no-patches]
[--parts]``.

Loads the project's model into an :class:`~rasa.core.agent.Agent` with a real SQLite tracker store and the
real action server (started on a free port), holds one conversation, and prints a cProfile of
``Agent.handle_message`` at the chosen turns (sorted by cumulative time), plus the mean time per turn of
turns 2–11 and of the last ten. With ``--parts``, no profiler: the median wall time of each part of a
message (tracker read and save, NLU, RulePolicy, the session check, the action calls and, inside them, the
tracker copy and the payload) at turns 2–11 and at the last ten.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from bench import load, servers
from devtools.servers import MODEL

CPU_TIMES: List[float] = []  # process CPU seconds of each message, in order

# The part of a message each timed function stands for: (module, class, function, part).
PARTS = [
    ("rasa_ext.tracker_store", "ResilientSQLTrackerStore", "_retrieve", "tracker read"),
    ("rasa_ext.tracker_store", "ResilientSQLTrackerStore", "save", "tracker save"),
    ("rasa.core.processor", "MessageProcessor", "parse_message", "NLU"),
    ("rasa.core.processor", "MessageProcessor", "_update_tracker_session", "session check"),
    ("rasa.core.policies.rule_policy", "RulePolicy", "predict_action_probabilities", "RulePolicy"),
    ("rasa.core.processor", "MessageProcessor", "_run_action", "actions (all of each call)"),
    ("rasa.shared.core.trackers", "DialogueStateTracker", "copy", "  of which tracker copies"),
    ("rasa.core.actions.action", "RemoteAction", "_action_call_format", "  of which payloads built"),
]


def time_parts(spent: Dict[str, float]) -> None:
    """Wraps each function of :data:`PARTS` to add its wall time to ``spent[part]``."""
    import importlib

    def timed(function: Callable, part: str) -> Callable:
        if asyncio.iscoroutinefunction(function):
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    spent[part] = spent.get(part, 0.0) + time.perf_counter() - began
        else:
            def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                began = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent[part] = spent.get(part, 0.0) + time.perf_counter() - began
        return wrapper

    for module, owner, name, part in PARTS:
        cls = getattr(importlib.import_module(module), owner)
        setattr(cls, name, timed(getattr(cls, name), part))


async def conversation(endpoints: Path, turns: int, at: Sequence[int], top: int,
                       spent: Optional[Dict[str, float]] = None, parts: Optional[List[Dict[str, float]]] = None
                       ) -> List[float]:
    from rasa.core.agent import load_agent
    from rasa.core.channels import UserMessage
    from rasa.core.utils import AvailableEndpoints

    agent = await load_agent(model_path=str(MODEL), endpoints=AvailableEndpoints.read_endpoints(str(endpoints)))
    sender = uuid.uuid4().hex
    timings = []
    for turn in range(1, turns + 1):
        text = load.PROJECT_MESSAGES[(turn - 1) % len(load.PROJECT_MESSAGES)]
        profiler = cProfile.Profile() if turn in at and spent is None else None
        if spent is not None:
            spent.clear()
        began, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        await agent.handle_message(UserMessage(text, sender_id=sender))
        if profiler:
            profiler.disable()
        timings.append(time.perf_counter() - began)
        CPU_TIMES.append(time.process_time() - cpu)
        if spent is not None and parts is not None:
            parts.append({**spent, "whole message": timings[-1]})
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(top)
            print(f"===== turn {turn}: {timings[-1] * 1000:.1f} ms =====\n{out.getvalue()}")
    return timings


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--at", type=int, nargs="*", default=[5, 100])
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--no-patches", action="store_true", help="profile Rasa as released")
    parser.add_argument("--parts", action="store_true", help="time the parts of each message, no profiler")
    args = parser.parse_args(argv)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.INFO)  # as `rasa run` does: without it structlog prints every debug line
    if not args.no_patches:
        from rasa_ext import patches

        patches.apply()
    spent: Optional[Dict[str, float]] = {} if args.parts else None
    parts: List[Dict[str, float]] = []
    if spent is not None:
        time_parts(spent)
    with tempfile.TemporaryDirectory(prefix="profile-") as temp:
        project = servers.project(Path(temp))
        actions = servers.Assistant(name="actions", folder=project.folder, env=project.env, cwd=project.cwd,
                                    url="", commands={"actions": project.commands["actions"]},
                                    health={"actions": project.health["actions"]})
        import os

        os.environ["ACTION_SERVER_TOKEN"] = project.env["ACTION_SERVER_TOKEN"]
        actions.start()
        try:
            timings = asyncio.run(conversation(project.folder / "endpoints.yml", args.turns, args.at, args.top,
                                               spent, parts))
        finally:
            actions.stop()
    early, late = timings[1:11], timings[-10:]
    if parts:
        print("part, median ms: turns 2–11 → the last ten")
        for part in [part for *_, part in PARTS] + ["whole message"]:
            before = statistics.median(turn.get(part, 0.0) for turn in parts[1:11]) * 1000
            after = statistics.median(turn.get(part, 0.0) for turn in parts[-10:]) * 1000
            print(f"  {part:28s} {before:6.1f} → {after:6.1f}")
    print(f"mean of turns 2–11: {statistics.mean(early) * 1000:.1f} ms; "
          f"of the last ten: {statistics.mean(late) * 1000:.1f} ms")
    # CPU time of this process (all its threads) per message: what other processes on a busy machine
    # change least. The action server's own CPU is not in it.
    cpu_early, cpu_late = statistics.median(CPU_TIMES[1:11]), statistics.median(CPU_TIMES[-10:])
    print(f"Rasa's CPU time per message, median: turns 2–11 {cpu_early * 1000:.1f} ms, the last ten "
          f"{cpu_late * 1000:.1f} ms ({cpu_late / cpu_early:.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
