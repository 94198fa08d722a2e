"""Starts the assistant's servers together and stops them together (``make run``).

* the action server (``python -m actions``) on 127.0.0.1:5055;
* the Rasa server with the REST and socket.io channels on 127.0.0.1:5005, its HTTP API off;
* the staff console (``python -m console``) on 127.0.0.1:8001;
* the demo clinic page with the chat widget (``python -m web.server``) on 127.0.0.1:8000.

The Rasa server's channels come from build/credentials.yml, written by scripts/credentials.py from
credentials.yml, credentials.optional.yml and the environment (a channel whose variables are missing
stays off).

Ctrl-C (or SIGTERM) stops every server; if one of them stops by itself, the others are stopped too
and the exit status says so. Hosts and ports come from the environment: RASA_HOST, RASA_PORT,
ACTION_SERVER_HOST, ACTION_SERVER_PORT, CONSOLE_HOST, CONSOLE_PORT, WEB_HOST, WEB_PORT, WEB_ORIGINS (the
pages allowed to open the widget's socket), RASA_URL (the Rasa address browsers use), RASA_ENDPOINTS for
another endpoints file and RASA_CREDENTIALS for another credentials file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def commands(env: Dict[str, str]) -> Dict[str, List[str]]:
    """The servers to start, by name."""
    rasa_host = env.get("RASA_HOST", "127.0.0.1")
    return {
        "actions": [sys.executable, "-m", "actions",
                    "--host", env.get("ACTION_SERVER_HOST", "127.0.0.1"),
                    "--port", env.get("ACTION_SERVER_PORT", "5055")],
        "rasa": [sys.executable, "-m", "rasa_ext", "run", "--model", env.get("RASA_MODEL", "models/clinic.tar.gz"),
                 "--endpoints", env.get("RASA_ENDPOINTS", "endpoints.yml"),
                 "--credentials", env.get("RASA_CREDENTIALS", "build/credentials.yml"),
                 "--interface", rasa_host, "--port", env.get("RASA_PORT", "5005")],
        "console": [sys.executable, "-m", "console",
                    "--host", env.get("CONSOLE_HOST", "127.0.0.1"),
                    "--port", env.get("CONSOLE_PORT", "8001")],
        "web": [sys.executable, "-m", "web.server"],
    }


def wait_until_up(url: str, process: subprocess.Popen, keep_waiting: Callable[[], bool],
                  timeout: float = 180) -> bool:
    """Whether ``url`` answered before ``timeout`` seconds, while ``process`` kept running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and keep_waiting():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


def stop(processes: Dict[str, subprocess.Popen]) -> None:
    """Stops every process: SIGTERM, then SIGKILL after ten seconds."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    env = dict(os.environ)
    (ROOT / "var").mkdir(exist_ok=True)
    web_port = env.setdefault("WEB_PORT", "8000")
    env.setdefault("WEB_ORIGINS", f"http://localhost:{web_port},http://127.0.0.1:{web_port}")
    env.setdefault("RASA_URL", f"http://localhost:{env.get('RASA_PORT', '5005')}")
    if "RASA_CREDENTIALS" not in env:
        if subprocess.run([sys.executable, "scripts/credentials.py"], cwd=ROOT, env=env).returncode:
            return 2
    processes: Dict[str, subprocess.Popen] = {}
    interrupted = False

    def on_signal(signum: int, frame: Optional[object]) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for name, command in commands(env).items():
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        rasa_url = f"http://{env.get('RASA_HOST', '127.0.0.1')}:{env.get('RASA_PORT', '5005')}"
        if wait_until_up(rasa_url + "/", processes["rasa"], lambda: not interrupted):
            console_url = f"http://{env.get('CONSOLE_HOST', '127.0.0.1')}:{env.get('CONSOLE_PORT', '8001')}"
            print(f"\nThe assistant is ready. Demo page with the chat widget: http://localhost:{web_port}/\n"
                  f"REST channel: {rasa_url}/webhooks/rest/webhook (socket.io on {rasa_url}). "
                  f"Staff console: {console_url}. Press Ctrl-C to stop.\n", flush=True)
        while not interrupted:
            exited = [name for name, process in processes.items() if process.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} stopped unexpectedly; stopping the others.", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        stop(processes)
        print("All servers stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
