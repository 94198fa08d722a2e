"""Writes the Rasa server's channel configuration, build/credentials.yml, from the environment.

    python scripts/credentials.py [--out build/credentials.yml]

* ``credentials.yml``: the channels that are always on (REST and the web widget's socket.io). The
  socket.io channel's allowed origins are replaced by ``WEB_ORIGINS`` (comma-separated exact origins,
  e.g. ``https://www.example.com,https://example.com``) when it is set.
* ``credentials.optional.yml``: the callback, Slack, Telegram, Facebook Messenger and Twilio channels,
  written with ``${VARIABLE}`` placeholders. A channel goes into the output only when all of its
  variables are set and not empty; otherwise it stays off and the script names the missing variables.
  (Rasa's own ``${VARIABLE}`` substitution stops the server when a variable is missing.)

It prints which channels are on and off, never a value: the output file holds secrets and is
written readable by its owner only. Exit status 2 when the always-on channels are misconfigured.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set

import yaml

from channels.origins import parse_origins

ROOT = Path(__file__).resolve().parent.parent

BASE = ROOT / "credentials.yml"
OPTIONAL = ROOT / "credentials.optional.yml"
OUT = ROOT / "build" / "credentials.yml"
DEFAULT_ORIGINS = "http://localhost:8000,http://127.0.0.1:8000"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The always-on channels cannot be configured as asked."""


@dataclass
class Rendered:
    channels: Dict[str, Any]
    on: List[str] = field(default_factory=list)
    off: Dict[str, List[str]] = field(default_factory=dict)  # channel -> its missing variables

    def summary(self) -> str:
        lines = ["Channels on: " + ", ".join(self.on)]
        for settings in self.channels.values():
            if isinstance(settings, dict) and "cors_allowed_origins" in settings:
                lines.append("Web pages allowed to use socket.io: " + ", ".join(settings["cors_allowed_origins"]))
        for name, missing in self.off.items():
            lines.append(f"Channel off: {name} (not set: {', '.join(missing)})")
        return "\n".join(lines)


def variables(value: Any) -> Set[str]:
    """The ``${VARIABLE}`` names used anywhere in a channel's settings."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(variables(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(item) for item in value)) if value else set()
    return set()


def substitute(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: env[match.group(1)], value)
    if isinstance(value, Mapping):
        return {key: substitute(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, env) for item in value]
    return value


def short_name(channel: str) -> str:
    """``channels.socketio.SocketIOInput`` -> ``socketio``; built-in names stay as they are."""
    return channel.split(".")[-2] if "." in channel else channel


def load(path: Path) -> Dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected channel names at the top level")
    return data


def render(env: Mapping[str, str], base: Path = BASE, optional: Path = OPTIONAL) -> Rendered:
    """The channels to run with ``env``: every channel of ``base``, and each one of ``optional`` whose
    variables are all set (not empty) in ``env``."""
    env = {name: value for name, value in env.items() if value != ""}
    rendered = Rendered(channels={})
    for channel, settings in load(base).items():
        missing = sorted(variables(settings) - set(env))
        if missing:
            raise ConfigError(f"credentials.yml, {channel}: not set: {', '.join(missing)}")
        settings = substitute(settings, env)
        if isinstance(settings, dict) and "cors_allowed_origins" in settings:
            source = "WEB_ORIGINS" if env.get("WEB_ORIGINS") else f"{base.name}, {channel}"
            try:
                settings["cors_allowed_origins"] = parse_origins(
                    env.get("WEB_ORIGINS") or settings["cors_allowed_origins"] or DEFAULT_ORIGINS)
            except ValueError as error:
                raise ConfigError(f"{source}: {error}") from None
        rendered.channels[channel] = settings
        rendered.on.append(short_name(channel))
    for channel, settings in load(optional).items():
        if channel in rendered.channels:
            raise ConfigError(f"{optional.name}: {channel} is already in {base.name}")
        missing = sorted(variables(settings) - set(env))
        if missing:
            rendered.off[short_name(channel)] = missing
            continue
        rendered.channels[channel] = substitute(settings, env)
        rendered.on.append(short_name(channel))
    return rendered


def write(rendered: Rendered, out: Path) -> None:
    """Writes the channels to ``out``, readable by its owner only (it holds the platforms' secrets)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = ("# Written by scripts/credentials.py from credentials.yml, credentials.optional.yml and the\n"
            "# environment. Do not edit: it is rewritten at every start. It may hold secrets.\n")
    text += yaml.safe_dump(rendered.channels, sort_keys=False, default_flow_style=False)
    # Rasa expands ${...} in this file when it reads it: a value that still holds one would be
    # expanded (or stop the server); refuse it rather than let a secret be rewritten.
    if "${" in text:
        raise ConfigError("a channel setting contains '${' after substitution; refusing to write it")
    temporary = out.with_name(out.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default: build/credentials.yml)")
    parser.add_argument("--base", type=Path, default=BASE, help=argparse.SUPPRESS)
    parser.add_argument("--optional", type=Path, default=OPTIONAL, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        rendered = render(os.environ, args.base, args.optional)
        write(rendered, args.out)
    except ConfigError as error:
        print(f"credentials: {error}", file=sys.stderr)
        return 2
    print(rendered.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
