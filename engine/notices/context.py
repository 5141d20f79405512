"""What a notice template sees: the notice, the office and its seal, the regions, the covered cases."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access.regions import ancestor_at
from engine.core.glossary import ACTION_LABELS, CASE_STATUS_LABELS
from engine.models import (
    Case,
    IssuedNotice,
    IssuedNoticeCase,
    OfficeKey,
    Region,
    RegionLevel,
    Role,
    TaskRow,
    TaskStatus,
    User,
)
from engine.notices.eligibility import Group
from engine.notices.formatting import cn_date, mask_name, short_region_name
from engine.notices.images import data_uri, qr_svg, seal_png
from engine.notices.pki import SOURCE_DEMO
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.forms import mask_id
from engine.procedures.notice_catalog import NoticeKind
from engine.procedures.steps import ISSUE_ACTION
from engine.queries.inbox import merged_data

PUBLIC_URL_ENV = "XIANGFLOW_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"


def public_url() -> str:
    """XIANGFLOW_PUBLIC_URL: the address the QR codes point to (default the development server)."""
    return (os.environ.get(PUBLIC_URL_ENV) or DEFAULT_PUBLIC_URL).rstrip("/")


def cover(case: Case, public: bool) -> dict[str, Any]:
    """How a notice row lists a case it covers (the name masked on a notice that is not public)."""
    name = case.subject.name
    return {"case_id": case.id, "name": name if public else mask_name(name), "region_code": case.region_code}


class NoticeContext:
    """Builds the template context of one notice from the database (read only)."""

    def __init__(self, session: Session, base_url: str):
        self.session = session
        self.base_url = base_url

    def build(self, kind: NoticeKind, group: Group, office: OfficeKey, params: dict[str, Any], serial: str,
              now: datetime, manifest_settings: dict[str, Any]) -> dict[str, Any]:
        today = now.astimezone(CHINA_TZ).date()
        regions = self.region_names({c.region_code for c in group.cases} | {group.region_code, office.region_code})
        case_rows = [self.case_context(c, kind, regions) for c in group.cases]
        derived = dict(params)
        if "period_start" in params and "period_days" in params and "period_end" not in params:
            start = date.fromisoformat(params["period_start"])
            derived["period_end"] = (start + timedelta(days=int(params["period_days"]) - 1)).isoformat()
        verify_url = f"{self.base_url}/verify/{serial}"
        demo = office.source == SOURCE_DEMO
        return {
            "notice": {"serial": serial, "kind": kind.code, "kind_name": kind.name, "title": "",
                       "date": today, "date_text": cn_date(today), "public": kind.public,
                       "verify_url": verify_url, "qr_data_uri": data_uri("image/svg+xml", qr_svg(verify_url))},
            "params": derived,
            "office": {"name": office.office_name, "region": regions.get(office.region_code), "demo": demo,
                       "seal_data_uri": data_uri("image/png", seal_png(office.office_name, demo))},
            "region": regions.get(group.region_code),
            "village": regions.get(ancestor_at(group.region_code, RegionLevel.village))
            if kind.group_by in ("case", "village") else None,
            "township": regions.get(ancestor_at(group.region_code, RegionLevel.township)),
            "county": regions.get(ancestor_at(group.region_code, RegionLevel.county)),
            "cases": case_rows,
            "settings": manifest_settings,
        }

    def region_names(self, codes: set[str]) -> dict[str, dict[str, str]]:
        wanted = set()
        for code in codes:
            for level in (RegionLevel.county, RegionLevel.township, RegionLevel.village):
                wanted.add(ancestor_at(code, level))
        rows = self.session.scalars(select(Region).where(Region.code.in_(wanted))).all()
        return {r.code: {"code": r.code, "name": r.name, "short_name": short_region_name(r.name),
                         "level": r.level.value} for r in rows}

    def issued_for(self, case: Case) -> dict[str, dict[str, Any]]:
        """The newest notice of each kind issued for the case: its serial and 文号 (a 审批表 quotes the 公告's)."""
        rows = self.session.scalars(select(IssuedNotice).join(IssuedNoticeCase, IssuedNoticeCase.notice_id == IssuedNotice.id)
                                    .where(IssuedNoticeCase.case_id == case.id).order_by(IssuedNotice.id))
        return {n.kind: {"serial": n.serial, "document_number": (n.params or {}).get("document_number")} for n in rows}

    def case_context(self, case: Case, kind: NoticeKind, regions: dict[str, dict[str, str]]) -> dict[str, Any]:
        tasks = list(self.session.scalars(select(TaskRow).where(TaskRow.case_id == case.id).order_by(TaskRow.id)))
        role_names = {r.code: r.name for r in self.session.scalars(select(Role))}
        users = {u.id: u.display_name for u in self.session.scalars(
            select(User).where(User.id.in_({t.completed_by_id for t in tasks if t.completed_by_id})))}
        steps = [{
            "step": t.spec_name, "title": t.title,
            "level": re.sub(r"\s*\([a-z_]+\)\s*$", "", t.lane or "") or role_names.get(t.role_code, t.role_code),
            "role": role_names.get(t.role_code, t.role_code),
            "action": t.action, "action_label": ACTION_LABELS.get(t.action or "", t.action or ""),
            "opinion": t.opinion or "", "by": users.get(t.completed_by_id or 0, ""),
            "date": t.completed_at.astimezone(CHINA_TZ).date() if t.completed_at else None,
            "date_text": cn_date(t.completed_at),
        } for t in tasks if t.status == TaskStatus.completed and t.action != ISSUE_ACTION]  # opinions only
        subject = case.subject
        attrs = subject.attrs or {}
        return {
            "id": case.id, "title": case.title, "status": case.status.value,
            "status_label": CASE_STATUS_LABELS.get(case.status.value, case.status.value),
            "subject_name": subject.name,
            "id_number": mask_id(subject.id_number) if kind.public else (subject.id_number or ""),
            "members": attrs.get("members", ""), "category": attrs.get("category", ""), "attrs": attrs,
            "village": regions.get(ancestor_at(case.region_code, RegionLevel.village)),
            "township": regions.get(ancestor_at(case.region_code, RegionLevel.township)),
            "county": regions.get(ancestor_at(case.region_code, RegionLevel.county)),
            "data": merged_data(tasks), "steps": steps, "issued": self.issued_for(case),
            "created_date_text": cn_date(case.created_at), "finished_date_text": cn_date(case.finished_at),
        }
