"""The staff console's web app (Flask 3, server-rendered, no JavaScript)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import functools
import hmac
import io
import json
import logging
import math
import re
import secrets
from typing import Any, Dict, Iterator, Optional
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from sqlalchemy.engine import URL

from actions.store import STATUSES, RequestStore, database_url
from console import auth, config, db, queries, redaction, summary
from console.text import clean

logger = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"login", "static"}
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL
KEY = re.compile(r"[A-Za-z0-9_-]+")
# "/" then URL characters; not "//" nor "/\" (another host for browsers)
NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
# The last line of an export that failed part-way (then the connection is cut).
EXPORT_FAILED = {"csv": "\nEXPORT FAILED: this file is incomplete\n",
                 "json": "\n], \"complete\": false, \"error\": \"export failed: this file is incomplete\"}\n"}
AUDIT_PAGE_SIZE = 100
CSV_COLUMNS = ("conversation_id", "started_at", "topics", "fallback", "consultation", "emergency",
               "at", "speaker", "text", "intent", "confidence", "action")


def create_app(db_url: URL | str | None = None, overrides: Optional[Dict[str, Any]] = None) -> Flask:
    """The console for the database at ``db_url`` (default: the assistant's database)."""
    app = Flask(__name__)
    settings = config.settings()
    app.config.update(
        SECRET_KEY=config.secret_key(),
        SESSION_COOKIE_NAME="console_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["SECURE_COOKIES"],
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings["MAX_SESSION_SECONDS"]),
        MAX_CONTENT_LENGTH=64 * 1024,
        CONSOLE=settings,
    )
    if overrides:
        app.config.update(overrides)
        app.config["CONSOLE"] = {**settings, **overrides.get("CONSOLE", {})}
    engine = db.make_engine(db_url or database_url())
    db.create_schema(engine)
    app.extensions["console_engine"] = engine
    requests_store = RequestStore(engine.url)
    requests_store.engine = engine

    def cfg(name: str) -> Any:
        return app.config["CONSOLE"][name]

    def audit(action: str, target: Optional[str] = None, detail: Optional[str] = None,
              actor: Optional[str] = None) -> None:
        db.write_audit(engine, actor or (g.user.email if g.get("user") else "-"), action, target, detail,
                       request.remote_addr)

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["topic_label"] = summary.topic_label
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["datetime"] = utc_datetime
    app.jinja_env.filters["phone"] = display_phone
    app.jinja_env.filters["percent"] = lambda value: f"{100 * value:.1f} %"

    @app.before_request
    def require_session() -> Optional[Response]:
        g.user = auth.session_user(engine, session.get("sid"), cfg("IDLE_SECONDS"), cfg("MAX_SESSION_SECONDS"))
        if request.endpoint not in PUBLIC_ENDPOINTS and g.user is None:
            if request.method == "GET":
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            abort(401)
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            expected = session.get("csrf", "")
            if not expected or not hmac.compare_digest(str(sent).encode("utf-8", "surrogatepass"),
                                                       str(expected).encode("utf-8", "surrogatepass")):
                abort(400, "The form expired or did not come from this console: reload the page and try again.")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def error(exc):
        return render_template("error.html", error=exc), exc.code

    @app.route("/login", methods=["GET", "POST"])
    def login():
        target = safe_next(request.values.get("next"))
        if request.method == "GET":
            if g.user:
                return redirect(target)
            csrf_token()
            return render_template("login.html", next=target, email="")
        email = request.form.get("email", "")[:254]
        actor = clean(email).strip().lower()[:254] or "-"
        attempt = auth.begin_attempt(engine, request.remote_addr, cfg("IP_MAX_FAILED_LOGINS"),
                                     cfg("IP_WINDOW_SECONDS"))
        if attempt is None:
            audit("login_throttled", actor=actor)
            flash("Too many failed sign-ins from your address: wait a few minutes and try again, or ask an "
                  "administrator.", "error")
            return render_template("login.html", next=target, email=email), 429
        result = auth.authenticate(engine, email, request.form.get("password", "")[:1024],
                                   cfg("MAX_FAILED_LOGINS"), cfg("LOCK_SECONDS"))
        if result["user"] is None:
            audit(f"login_{result['outcome']}", actor=actor)
            flash("Wrong email or password, or the account is locked after too many attempts: "
                  "wait and try again, or ask an administrator.", "error")
            return render_template("login.html", next=target, email=email), 401
        auth.attempt_succeeded(engine, attempt)
        old = session.get("sid")
        if old:
            auth.end_session(engine, old)
        session.clear()  # a new session and a new CSRF token after signing in
        session.permanent = True
        session["sid"] = auth.start_session(engine, result["user"])
        csrf_token()
        g.user = result["user"]
        audit("login")
        return redirect(target)

    @app.post("/logout")
    def logout():
        audit("logout")
        auth.end_session(engine, session.get("sid"))
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def index():
        return redirect(url_for("conversations"))

    @app.get("/conversations")
    def conversations():
        summary.refresh(engine)
        filters = queries.Filters.from_args(request.args)
        page = page_number()
        total = queries.count_conversations(engine, filters)
        rows = queries.list_conversations(engine, filters, page)
        audit("view_conversations", detail=f"filters: {filters.describe()}; page {page}")
        return render_template("conversations.html", rows=rows, filters=filters, total=total, page=page,
                               pages=max(1, math.ceil(total / queries.PAGE_SIZE)),
                               topics=queries.known_topics(engine), flags=queries.FLAGS)

    @app.get("/conversations/<key>")
    def transcript(key: str):
        sender_id = conversation_id(key)
        if sender_id is None:
            abort(404)
        summary.refresh(engine)
        turns = queries.transcript(engine, sender_id) if db.has_events(engine) else []
        about = queries.conversation(engine, sender_id)
        if not turns and about is None:
            abort(404)
        audit("view_transcript", target=clean(sender_id))
        return render_template("transcript.html", sender_id=clean(sender_id), turns=turns, about=about,
                               requests=queries.requests_for(engine, sender_id))

    @app.get("/requests")
    def requests_page():
        status = request.args.get("status") or None
        if status not in (None, *STATUSES):
            status = None
        page = page_number()
        rows, total = queries.list_requests(engine, status, page)
        audit("view_requests", detail=f"status: {status or 'all'}; page {page}")
        return render_template("requests.html", rows=rows, status=status, statuses=STATUSES, total=total,
                               page=page, pages=max(1, math.ceil(total / queries.PAGE_SIZE)))

    # Ids beyond the column's range are "not found" (404), never a database error.
    @app.post(f"/requests/<int(max={MAX_ID}):request_id>/status")
    def change_status(request_id: int):
        status = request.form.get("status", "")
        if status not in STATUSES:
            abort(400, "Unknown status.")
        if not requests_store.set_status(request_id, status, g.user.email):
            abort(404)
        audit("change_request_status", target=f"request {request_id}", detail=f"status: {status}")
        flash(f"Request {request_id} marked {status}.", "ok")
        back = safe_next(request.form.get("next")) if request.form.get("next") else url_for("requests_page")
        return redirect(back)

    @app.get("/insight")
    def insight():
        summary.refresh(engine)
        filters = queries.Filters.from_args(request.args)
        figures = queries.insight(engine, filters)
        audit("view_insight", detail=f"filters: {filters.describe()}")
        return render_template("insight.html", figures=figures, filters=filters, flags=queries.FLAGS,
                               topics=queries.known_topics(engine))

    @app.get("/audit")
    def audit_log():
        page = page_number()
        rows, total = db_rows_audit(engine, page)
        audit("view_audit", detail=f"page {page}")
        return render_template("audit.html", rows=rows, page=page,
                               pages=max(1, math.ceil(total / AUDIT_PAGE_SIZE)))

    @app.get("/export.<any(csv, json):fmt>")
    def export(fmt: str):
        summary.refresh(engine)
        filters = queries.Filters.from_args(request.args)
        redacted = request.args.get("redact") in ("1", "on", "yes")
        total = queries.count_conversations(engine, filters)
        audit("export", detail=f"format: {fmt}; redacted: {'yes' if redacted else 'no'}; "
                               f"conversations: {total}; filters: {filters.describe()}")
        id_key = functools.partial(redaction.conversation_key, secret=app.config["SECRET_KEY"])
        items = queries.export_conversations(engine, filters, redacted, id_key=id_key)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        name = f"conversations-{stamp}{'-redacted' if redacted else ''}.{fmt}"
        body = stream_csv(items) if fmt == "csv" else stream_json(items)
        actor = g.user.email
        address = request.remote_addr

        def guarded() -> Iterator[str]:
            # Headers (200) are sent before the first row: an export that fails part-way ends with a line
            # saying so, and then the connection is cut without the end of the chunked body, so that no
            # client takes a truncated file for a whole one. The failure is audited and logged (type only).
            try:
                yield from body
            except Exception as error:
                logger.error("export failed part-way (%s)", type(error).__name__)
                db.write_audit(engine, actor, "export_failed", None, f"format: {fmt}; {type(error).__name__}",
                               address)
                yield EXPORT_FAILED[fmt]
                raise

        return Response(stream_with_context(guarded()),
                        mimetype="text/csv" if fmt == "csv" else "application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    app.jinja_env.globals["query_with"] = query_with
    app.jinja_env.globals["conversation_url"] = lambda sender: url_for("transcript", key=conversation_key(sender))
    return app


def conversation_key(sender_id: str) -> str:
    """The key of a conversation in console URLs: its id in URL-safe base64, so that no id (``../export.json``,
    ``..``, ``a/b?c#d``, control characters) can make a link resolve to another page."""
    return base64.urlsafe_b64encode(sender_id.encode("utf-8", "surrogatepass")).decode("ascii").rstrip("=")


def conversation_id(key: str) -> Optional[str]:
    """The conversation id of a URL key, or None when it is not one."""
    if not key or len(key) > 2000 or not KEY.fullmatch(key):
        return None
    try:
        return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError):
        return None


def db_rows_audit(engine, page: int, page_size: int = AUDIT_PAGE_SIZE):
    """A page of the audit log, newest first, and the number of entries."""
    import sqlalchemy as sa
    a = db.audit.c
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(db.audit)).scalar() or 0
        rows = [dict(row._mapping) for row in connection.execute(
            sa.select(db.audit).order_by(a.id.desc()).limit(page_size).offset((page - 1) * page_size))]
    return rows, total


def when(timestamp: Optional[float]) -> str:
    """An event time as shown (UTC); empty when missing or out of range (bad data is not an error)."""
    try:
        return dt.datetime.fromtimestamp(float(timestamp), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def utc_datetime(value: Optional[dt.datetime]) -> str:
    """A stored time as shown (in UTC): aware values (PostgreSQL gives them in the session's time zone) are
    converted; naive ones (SQLite) are stored in UTC already."""
    if not value:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M")


def page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 1_000_000))
    except ValueError:
        return 1


def safe_next(target: Optional[str]) -> str:
    """A path of this console to go to after signing in: a relative path of printable ASCII URL characters
    only (no space, control character or backslash, which browsers and ``urlsplit`` drop or turn into "/"),
    never ``//host`` nor the sign-in page; anything else goes to the conversations."""
    default = "/conversations"
    if not target or len(target) > 2000 or not NEXT.fullmatch(target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("/login"):
        return default
    return target


def query_with(**changes: Any) -> str:
    """The current query string with ``changes`` (for pagination links)."""
    from urllib.parse import urlencode
    args = {key: value for key, value in request.args.items()}
    args.update({key: str(value) for key, value in changes.items()})
    return "?" + urlencode({key: value for key, value in args.items() if value not in ("", None)})


def display_phone(phone: Optional[str]) -> str:
    if phone and len(phone) == 12 and phone.startswith("+1") and phone[1:].isdigit():
        return f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    return phone or ""


def spreadsheet_safe(value: Any) -> Any:
    """A cell the CSV writer can write (no NUL: "need to escape") and a spreadsheet will not run as a formula."""
    if isinstance(value, str):
        value = clean(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


def stream_csv(items: Iterator[Dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        head = [item["conversation_id"], item["started_at"], " ".join(item["topics"]), item["fallback"],
                item["consultation"], item["emergency"]]
        for message in item["messages"] or [{}]:
            writer.writerow([spreadsheet_safe(value) for value in head + [
                message.get("at"), message.get("speaker"), message.get("text"), message.get("intent"),
                message.get("confidence"), message.get("action")]])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def stream_json(items: Iterator[Dict[str, Any]]) -> Iterator[str]:
    """``{"conversations": [...], "complete": true}``: a reader can tell a whole export from a cut one."""
    yield '{"conversations": ['
    first = True
    for item in items:
        yield ("" if first else ",") + "\n" + json.dumps(item, ensure_ascii=False)
        first = False
    yield '\n], "complete": true}\n'
