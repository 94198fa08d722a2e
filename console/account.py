"""Signing in and out, and the session's CSRF token."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for

from console import audit, auth, db
from console.links import safe_next
from console.text import clean

bp = Blueprint("account", __name__)


def setting(name: str) -> Any:
    return current_app.config["CONSOLE"][name]


def csrf_token() -> str:
    """The session's CSRF token, made on first use (every form sends it back: console.app checks it)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.route("/login", methods=["GET", "POST"])
def login():
    engine = db.current_engine()
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.user:
            return redirect(target)
        csrf_token()
        return render_template("login.html", next=target, email="")
    email = request.form.get("email", "")[:254]
    actor = clean(email).strip().lower()[:254] or "-"
    attempt = auth.begin_attempt(engine, request.remote_addr, setting("IP_MAX_FAILED_LOGINS"),
                                 setting("IP_WINDOW_SECONDS"))
    if attempt is None:
        audit.count_throttled(setting("IP_WINDOW_SECONDS"))
        flash("Too many failed sign-ins from your address: wait a few minutes and try again, or ask an "
              "administrator.", "error")
        return render_template("login.html", next=target, email=email), 429
    result = auth.authenticate(engine, email, request.form.get("password", "")[:1024],
                               setting("MAX_FAILED_LOGINS"), setting("LOCK_SECONDS"))
    if result["user"] is None:
        audit.record(f"login_{result['outcome']}", actor=actor)
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
    audit.record("login")
    return redirect(target)


@bp.post("/logout")
def logout():
    audit.record("logout")
    auth.end_session(db.current_engine(), session.get("sid"))
    session.clear()
    return redirect(url_for("account.login"))
