"""Overdue report for township and county users, as a page and as an Excel file."""

from __future__ import annotations

from flask import Blueprint, Response, render_template
from flask_login import login_required

from web.services import actor, work

bp = Blueprint("reports", __name__, url_prefix="/reports")


@bp.route("/overdue")
@login_required
def overdue():
    with work() as w:
        return render_template("reports/overdue.html", lines=w.reports.overdue(actor()))


@bp.route("/overdue.xlsx")
@login_required
def overdue_xlsx():
    with work() as w:
        data = w.reports.to_xlsx(w.reports.overdue(actor()))
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": "attachment; filename=overdue.xlsx"})
