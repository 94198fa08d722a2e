"""The audit log: what each staff member did (``record``), and its page."""

from __future__ import annotations

import math
from typing import Optional

from flask import Blueprint, g, render_template, request

from console import db, queries
from console.links import page_number

bp = Blueprint("audit", __name__)


def record(action: str, target: Optional[str] = None, detail: Optional[str] = None,
           actor: Optional[str] = None) -> None:
    """Adds ``action`` to the audit log, by ``actor`` (default: the signed-in staff member) from the request's
    address."""
    db.write_audit(db.current_engine(), actor or (g.user.email if g.get("user") else "-"), action, target, detail,
                   request.remote_addr)


@bp.get("/audit")
def index():
    page = page_number()
    rows, total = queries.audit_page(db.current_engine(), page)
    record("view_audit", detail=f"page {page}")
    return render_template("audit.html", rows=rows, page=page,
                           pages=max(1, math.ceil(total / queries.AUDIT_PAGE_SIZE)))
