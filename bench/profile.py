"""Where a message's time goes, in-process: ``python -m bench.profile [--turns 100] [--at 5 100] [--no-patches]``.

Loads the project's model into an :class:`~rasa.core.agent.Agent` with a real SQLite tracker store and the
real action server (started on a free port), holds one conversation, and prints a cProfile of
``Agent.handle_message`` at the chosen turns (sorted by cumulative time), plus the mean time per turn of
turns 2–11 and of the last ten.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Optional, Sequence

from bench import load, servers


async def conversation(endpoints: Path, turns: int, at: Sequence[int], top: int) -> List[float]:
    from rasa.core.agent import load_agent
    from rasa.core.channels import UserMessage
    from rasa.core.utils import AvailableEndpoints

    agent = await load_agent(model_path=str(servers.MODEL), endpoints=AvailableEndpoints.read_endpoints(str(endpoints)))
    sender = uuid.uuid4().hex
    timings = []
    for turn in range(1, turns + 1):
        text = load.PROJECT_MESSAGES[(turn - 1) % len(load.PROJECT_MESSAGES)]
        profiler = cProfile.Profile() if turn in at else None
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        await agent.handle_message(UserMessage(text, sender_id=sender))
        if profiler:
            profiler.disable()
        timings.append(time.perf_counter() - began)
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
            print(f"===== turn {turn}: {timings[-1] * 1000:.1f} ms =====\n{out.getvalue()}")
    return timings


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--at", type=int, nargs="*", default=[5, 100])
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--no-patches", action="store_true", help="profile Rasa as released")
    args = parser.parse_args(argv)
    if not args.no_patches:
        from rasa_ext import patches

        patches.apply()
    with tempfile.TemporaryDirectory(prefix="profile-") as temp:
        project = servers.project(Path(temp))
        actions = servers.Assistant(name="actions", folder=project.folder, env=project.env, cwd=project.cwd,
                                    url="", commands={"actions": project.commands["actions"]},
                                    health={"actions": project.health["actions"]})
        import os

        os.environ["ACTION_SERVER_TOKEN"] = project.env["ACTION_SERVER_TOKEN"]
        actions.start()
        try:
            timings = asyncio.run(conversation(project.folder / "endpoints.yml", args.turns, args.at, args.top))
        finally:
            actions.stop()
    early, late = timings[1:11], timings[-10:]
    print(f"mean of turns 2–11: {statistics.mean(early) * 1000:.1f} ms; "
          f"of the last ten: {statistics.mean(late) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
