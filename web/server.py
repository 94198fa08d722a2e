"""Serves the chat widget and the demo clinic page (``python -m web.server``; ``make run`` starts it).

* ``/`` — the demo page (``index.html``) with the clinic's name and phone from ``knowledge/clinic.yml``
  and the Rasa server's URL filled in;
* ``/widget.js``, ``/widget.css`` — the widget, for embedding on any site;
* ``/vendor/socket.io.min.js`` — socket.io-client, from ``web/node_modules`` (``npm ci`` in ``web/``):
  served from here, never from a CDN.

Only these files are served (no directory listing, nothing else from the folder), GET and HEAD only,
with a restrictive Content-Security-Policy on the page. Environment: ``WEB_HOST`` (default 127.0.0.1),
``WEB_PORT`` (8000) and ``RASA_URL``, the address browsers use to reach the Rasa server (default
http://localhost:5005), and ``WEB_SOCKET_TRANSPORTS``, the widget's socket.io transports ("websocket" for a
Rasa server of several workers, which ``make run WORKERS=2`` sets; empty: socket.io's default). The page's own origin (e.g. http://localhost:8000) must be one of the socket.io
channel's allowed origins (``WEB_ORIGINS``, see ``scripts/credentials.py``).
"""

from __future__ import annotations

import html
import os
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from core.knowledge_loader import get_knowledge

WEB = Path(__file__).resolve().parent
SOCKET_IO = WEB / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

# URL path -> (file, content type). Nothing else is served.
FILES: Dict[str, Tuple[Path, str]] = {
    "/widget.js": (WEB / "widget.js", "text/javascript; charset=utf-8"),
    "/widget.css": (WEB / "widget.css", "text/css; charset=utf-8"),
    "/demo.js": (WEB / "demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": (WEB / "demo.css", "text/css; charset=utf-8"),
    "/vendor/socket.io.min.js": (SOCKET_IO, "text/javascript; charset=utf-8"),
}
PAGE = WEB / "index.html"


def rasa_origin(rasa_url: str) -> Tuple[str, str]:
    """The Rasa server's HTTP and WebSocket origins, for the page's ``connect-src``."""
    parts = urlsplit(rasa_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"RASA_URL must be an http(s) URL, not {rasa_url!r}")
    ws = "wss" if parts.scheme == "https" else "ws"
    return f"{parts.scheme}://{parts.netloc}", f"{ws}://{parts.netloc}"


def content_security_policy(rasa_url: str) -> str:
    http_origin, ws_origin = rasa_origin(rasa_url)
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {http_origin} {ws_origin}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def render_page(rasa_url: str, transports: str = "") -> bytes:
    """The demo page with the clinic's facts (from the knowledge files), the Rasa URL and the widget's
    socket.io transports (``WEB_SOCKET_TRANSPORTS``, e.g. "websocket"; empty: socket.io's default)
    filled in."""
    clinic = get_knowledge().clinic
    values = {
        "clinic_name": clinic.name,
        "clinic_short": clinic.short_name,
        "city": clinic.city,
        "phone": clinic.phone,
        "phone_tel": "+1" + clinic.phone_digits[-10:],
        "technical_problem": get_knowledge().technical_problem,
        "rasa_url": rasa_url,
        "transports": transports,
    }
    text = PAGE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", html.escape(value, quote=True))
    return text.encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    server_version = "clinic-web"
    sys_version = ""
    rasa_url = "http://localhost:5005"
    transports = ""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"Method not allowed\n", "text/plain; charset=utf-8",
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # type: ignore[assignment]

    def _serve(self, body: bool) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, render_page(self.rasa_url, self.transports), "text/html; charset=utf-8", body,
                       extra={"Content-Security-Policy": content_security_policy(self.rasa_url)})
        elif path in FILES:
            file, content_type = FILES[path]
            self._send(HTTPStatus.OK, file.read_bytes(), content_type, body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8", body)

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, body: bool = True,
              extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "cross-origin",  # widget.js may be embedded by other sites
            **(extra or {}),
        }
        if content_type.startswith("text/html"):
            headers["X-Frame-Options"] = "DENY"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # one short line per request
        sys.stderr.write(f"web: {self.address_string()} {format % args}\n")


def make_server(host: str, port: int, rasa_url: str, transports: str = "") -> ThreadingHTTPServer:
    rasa_origin(rasa_url)  # refuse a malformed URL at start-up
    if not set(filter(None, transports.split(","))) <= {"websocket", "polling"}:
        raise ValueError(f"WEB_SOCKET_TRANSPORTS must list websocket and/or polling, not {transports!r}")
    handler = type("ConfiguredHandler", (Handler,), {"rasa_url": rasa_url.rstrip("/"), "transports": transports})
    return ThreadingHTTPServer((host, port), handler)


def main() -> int:
    if not SOCKET_IO.exists():
        print(f"{SOCKET_IO.relative_to(WEB.parent)} is missing: run `npm ci` in web/", file=sys.stderr)
        return 1
    host = os.environ.get("WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("WEB_PORT", "8000"))
    rasa_url = os.environ.get("RASA_URL", "http://localhost:5005")
    get_knowledge()  # a broken knowledge folder stops start-up here, with the file and the problem
    server = make_server(host, port, rasa_url, os.environ.get("WEB_SOCKET_TRANSPORTS", "").strip())
    print(f"Demo page: http://{'localhost' if host == '127.0.0.1' else host}:{port}/ "
          f"(widget talks to {rasa_url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
