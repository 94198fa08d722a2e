"""The staff console's web app (Flask 3, server-rendered, no JavaScript): ``create_app`` sets up the
configuration, the database, the request hooks and the template filters; the pages are blueprints
(console.account, console.conversations, console.consultations, console.audit)."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Dict, Optional

from flask import Flask, Response, abort, g, redirect, render_template, request, session, url_for
from sqlalchemy.engine import URL

from console import account, audit, auth, config, consultations, conversations, db, summary
from console.links import conversation_key, query_with
from core.parsing import display_phone
from core.settings import database_url
from core.store import RequestStore, make_engine

PUBLIC_ENDPOINTS = {"account.login", "static"}


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
    # One engine for the whole console, the consultation requests included (db.current_engine/current_requests).
    engine = make_engine(db_url or database_url())
    db.create_schema(engine)
    app.extensions["console_engine"] = engine
    app.extensions["console_requests"] = RequestStore(engine)

    def cfg(name: str) -> Any:
        return app.config["CONSOLE"][name]

    app.jinja_env.globals["csrf_token"] = account.csrf_token
    app.jinja_env.globals["topic_label"] = summary.topic_label
    app.jinja_env.globals["query_with"] = query_with
    app.jinja_env.globals["conversation_url"] = lambda sender: url_for("conversations.transcript",
                                                                       key=conversation_key(sender))
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["datetime"] = utc_datetime
    app.jinja_env.filters["phone"] = display_phone
    app.jinja_env.filters["percent"] = lambda value: f"{100 * value:.1f} %"

    @app.before_request
    def require_session() -> Optional[Response]:
        g.user = auth.session_user(engine, session.get("sid"), cfg("IDLE_SECONDS"), cfg("MAX_SESSION_SECONDS"))
        if request.endpoint not in PUBLIC_ENDPOINTS and g.user is None:
            if request.method == "GET":
                return redirect(url_for("account.login", next=request.full_path.rstrip("?")))
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

    for blueprint in (account.bp, conversations.bp, consultations.bp, audit.bp):
        app.register_blueprint(blueprint)
    return app


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
