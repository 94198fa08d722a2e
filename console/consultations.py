"""The consultation requests page: the requests, newest first, and their follow-up (new → contacted → closed)."""

from __future__ import annotations

import math

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from console import audit, db, queries
from console.links import MAX_ID, page_number, safe_next
from core.store import STATUSES

bp = Blueprint("consultations", __name__)


@bp.get("/requests")
def index():
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    page = page_number()
    requests = db.current_requests()
    total = requests.count(status)
    rows = requests.list(status, limit=queries.PAGE_SIZE, offset=(page - 1) * queries.PAGE_SIZE, with_history=True)
    audit.record("view_requests", detail=f"status: {status or 'all'}; page {page}")
    return render_template("requests.html", rows=rows, status=status, statuses=STATUSES, total=total,
                           page=page, pages=max(1, math.ceil(total / queries.PAGE_SIZE)))


# Ids beyond the column's range are "not found" (404), never a database error.
@bp.post(f"/requests/<int(max={MAX_ID}):request_id>/status")
def change_status(request_id: int):
    status = request.form.get("status", "")
    if status not in STATUSES:
        abort(400, "Unknown status.")
    if not db.current_requests().set_status(request_id, status, g.user.email):
        abort(404)
    audit.record("change_request_status", target=f"request {request_id}", detail=f"status: {status}")
    flash(f"Request {request_id} marked {status}.", "ok")
    back = safe_next(request.form.get("next")) if request.form.get("next") else url_for("consultations.index")
    return redirect(back)
