"""JSON API of notices (公示/公告): issue one for open 出具 steps or for cases, and fetch its signed PDF.

The same service as the notices page (``NoticeService.issue``), so a client can walk a case end to end.
The routes hang on the API blueprint (``web/api.py`` imports this module), sharing its guard and errors.
"""

from __future__ import annotations

import io

from flask import jsonify, send_file, url_for

from engine.core.errors import ValidationError
from web.api import body, bp
from web.services import actor, client_addr, work


def _int_list(payload: dict, key: str) -> list[int]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31
                                              for v in value):
        raise ValidationError(f"{key} 应为正整数数组", {key: "应为正整数数组"})
    return value


def notice_json(notice) -> dict:
    return {"serial": notice.serial, "title": notice.title, "procedure": notice.procedure_code,
            "kind": notice.kind, "kind_name": notice.kind_name, "public": notice.public,
            "region_code": notice.region_code, "office": notice.office_name, "issued_at": notice.issued_at.isoformat(),
            "document_date": notice.document_date, "sha256": notice.sha256, "pages": notice.page_count,
            "pdf": url_for("api.notice_pdf", serial=notice.serial),
            "verify": url_for("notices.verify", serial=notice.serial, _external=True)}


@bp.route("/notices", methods=["POST"])
def issue_notice():
    payload = body()
    fields = payload.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, (str, int, float)) for v in fields.values()):
        raise ValidationError("fields 应为对象(字段 → 值)", {"fields": "应为对象,值为文字或数字"})
    office = payload.get("office_key_id")
    if office is not None and (not isinstance(office, int) or isinstance(office, bool) or not 0 < office < 2**31):
        raise ValidationError("office_key_id 无效", {"office_key_id": "应为正整数"})
    me = actor()
    with work() as w:
        if "task_ids" in payload:
            procedure, kind, case_ids = w.notices.issuance_of_tasks(me, _int_list(payload, "task_ids"))
        else:
            procedure, kind = payload.get("procedure"), payload.get("kind")
            if not isinstance(procedure, str) or not isinstance(kind, str):
                raise ValidationError("请给出 task_ids,或 procedure、kind 与 case_ids",
                                      {"task_ids": "请给出出具公示/公告的任务,或事项、种类与案件"})
            case_ids = _int_list(payload, "case_ids")
        notice = w.notices.issue(me, procedure, kind, case_ids, {k: str(v) for k, v in fields.items()},
                                 office_key_id=office, client_addr=client_addr())
        out = notice_json(notice)
        out["case_ids"] = case_ids
    return jsonify(out), 201


@bp.route("/notices/<serial>.pdf")
def notice_pdf(serial: str):
    with work() as w:
        notice = w.notices.get_for(actor(), serial)  # NotFoundError for a serial the actor may not see
        data = w.notices.pdf(notice)
        name = f"{notice.serial}.pdf"
    return send_file(io.BytesIO(data), mimetype="application/pdf", download_name=name)
