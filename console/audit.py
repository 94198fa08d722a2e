"""The audit log: what each staff member did (``record``), and its page."""

from __future__ import annotations

import datetime as dt
import math
from typing import Optional

import sqlalchemy as sa
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


THROTTLED = "login_throttled"


def count_throttled(window_seconds: int) -> None:
    """Counts a sign-in refused by the per-address throttle: one audit row per address and window, its
    detail the number refused ("40 sign-ins refused"), its actor "-". A flood of refused attempts neither
    grows the audit log nor stores what the attacker typed."""
    engine = db.current_engine()
    address = request.remote_addr
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=max(window_seconds, 1))
    a = db.audit.c
    with engine.begin() as connection:
        row = connection.execute(
            sa.select(a.id, a.detail).where(a.action == THROTTLED).where(a.ip == address).where(a.at >= since)
            .order_by(a.id.desc()).limit(1)).first()
        if row is None:
            connection.execute(db.audit.insert().values(at=dt.datetime.now(dt.timezone.utc), actor="-",
                                                        action=THROTTLED, detail="1 sign-in refused", ip=address))
            return
        count = int((row.detail or "1").split()[0]) + 1 if (row.detail or "1").split()[0].isdigit() else 2
        connection.execute(db.audit.update().where(a.id == row.id).values(detail=f"{count} sign-ins refused"))


@bp.get("/audit")
def index():
    page = page_number()
    rows, total = queries.audit_page(db.current_engine(), page)
    record("view_audit", detail=f"page {page}")
    return render_template("audit.html", rows=rows, page=page,
                           pages=max(1, math.ceil(total / queries.AUDIT_PAGE_SIZE)))
