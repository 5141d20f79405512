"""``/healthz`` for load balancers and process supervisors: 200 when the database answers, else 503.

It needs no login, reads nothing but the database's answer to a trivial query, and keeps no state.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from engine.core.db import ping
from web.services import state

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    if ping(state().engine):
        return jsonify({"status": "ok", "database": "ok"})
    return jsonify({"status": "unavailable", "database": "unreachable"}), 503
