"""The conversations: the filtered list, a transcript, the insight figures and the export."""

from __future__ import annotations

import math

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from console import audit, db, export, queries, summary
from console.links import conversation_id, page_number
from console.text import clean

bp = Blueprint("conversations", __name__)


@bp.get("/")
def home():
    return redirect(url_for("conversations.index"))


@bp.get("/conversations")
def index():
    engine = db.current_engine()
    summary.refresh(engine)
    filters = queries.Filters.from_args(request.args)
    page = page_number()
    total = queries.count_conversations(engine, filters)
    rows = queries.list_conversations(engine, filters, page)
    audit.record("view_conversations", detail=f"filters: {filters.describe()}; page {page}")
    return render_template("conversations.html", rows=rows, filters=filters, total=total, page=page,
                           pages=max(1, math.ceil(total / queries.PAGE_SIZE)),
                           topics=queries.known_topics(engine), flags=queries.FLAGS)


@bp.get("/conversations/<key>")
def transcript(key: str):
    engine = db.current_engine()
    sender_id = conversation_id(key)
    if sender_id is None:
        abort(404)
    summary.refresh(engine)
    turns = queries.transcript(engine, sender_id) if db.has_events(engine) else []
    about = queries.conversation(engine, sender_id)
    if not turns and about is None:
        abort(404)
    audit.record("view_transcript", target=clean(sender_id))
    return render_template("transcript.html", sender_id=clean(sender_id), turns=turns, about=about,
                           requests=db.current_requests().find(sender_id))


@bp.get("/insight")
def insight():
    engine = db.current_engine()
    summary.refresh(engine)
    filters = queries.Filters.from_args(request.args)
    figures = queries.insight(engine, filters)
    audit.record("view_insight", detail=f"filters: {filters.describe()}")
    return render_template("insight.html", figures=figures, filters=filters, flags=queries.FLAGS,
                           topics=queries.known_topics(engine))


@bp.get("/export.<any(csv, json):fmt>", endpoint="export")
def export_conversations(fmt: str):
    engine = db.current_engine()
    summary.refresh(engine)
    filters = queries.Filters.from_args(request.args)
    redacted = request.args.get("redact") in ("1", "on", "yes")
    total = queries.count_conversations(engine, filters)
    audit.record("export", detail=f"format: {fmt}; redacted: {'yes' if redacted else 'no'}; "
                                  f"conversations: {total}; filters: {filters.describe()}")
    body = export.conversations(engine, filters, fmt, redacted, current_app.config["SECRET_KEY"])
    actor = g.user.email
    address = request.remote_addr

    def failed(error: Exception) -> None:  # the streaming outlives the request: who and where, kept from it
        db.write_audit(engine, actor, "export_failed", None, f"format: {fmt}; {type(error).__name__}", address)

    return Response(stream_with_context(export.guarded(body, fmt, failed)), mimetype=export.MIMETYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{export.filename(fmt, redacted)}"'})
