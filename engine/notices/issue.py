"""Issuing a notice: checks, the issuance step, render, sign, store, audit — in one savepoint.

Issuing one notice:

1. check the issuer may issue this kind for these cases with this office's key, that they are due,
   and the fields the issuer filled in;
2. complete the open issuance step of every covered case (CaseService.complete_issuance, through the
   mutation pipeline); the 公示 period the step starts is printed on the notice from the timer rows it
   started, so the notice and the timer agree;
3. render the template (engine/notices/render.py) with a serial number, a QR code to
   ``/verify/<serial>`` and the office's seal image over the issuer's name and date;
4. sign it with pyHanko (PAdES B-B, the signature widget over the seal);
5. store the PDF and its SHA-256 in ``issued_notice`` (immutable: database triggers refuse
   UPDATE/DELETE) and record ``notice_issued`` in each covered case's history (AuditLog).

Steps 2–5 run in a savepoint: if rendering or signing fails, no step is completed and nothing is stored.
Reissuing makes a new serial that names the notice it supersedes and keeps its period.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, NotFoundError, ValidationError
from engine.models import Case, IssuedNotice, IssuedNoticeCase, OfficeKey, Region, TaskRow, TimerRow
from engine.models.audit import AuditLog
from engine.notices import sign
from engine.notices.context import NoticeContext, cover
from engine.notices.eligibility import GROUP_LABEL, Eligibility, Group, groups
from engine.notices.fields import procedure_settings, validated_fields
from engine.notices.pki import KeyStore
from engine.notices.render import NoticeRenderer
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.notice_catalog import NoticeCatalog, NoticeKind

NOTICE_ACTION = "notice_issued"
SERIAL_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
MAX_REASON_LENGTH = 500
PERIOD_KEYS = ("period_start", "period_end", "period_days", "period_until")


def period_of(now: datetime, timers: list[TimerRow]) -> dict[str, Any]:
    """The 公示 period a completed issuance step started, as its timers hold it ({} when it started none)."""
    due = [t.due_at for t in timers]
    if not due:
        return {}
    start = now.astimezone(CHINA_TZ).date()
    end = max(due).astimezone(CHINA_TZ).date() - timedelta(days=1)
    return {"period_start": start.isoformat(), "period_end": end.isoformat(),
            "period_days": (end - start).days + 1, "period_until": max(due).isoformat()}


class NoticeIssuer:
    """Issues and reissues notices. Takes its collaborators; never commits."""

    def __init__(self, session: Session, clock, cases, keys: KeyStore, renderer: NoticeRenderer,
                 eligibility: Eligibility, base_url: str, audit: AuditLog | None = None):
        self.session = session
        self.clock = clock
        self.cases = cases
        self.keys = keys
        self.renderer = renderer
        self.eligibility = eligibility
        self.contexts = NoticeContext(session, base_url)
        self.audit = audit or AuditLog(session, clock)

    def issue(self, actor: Actor, catalog: NoticeCatalog | None, kind_code: str, case_ids: Iterable[int],
              values: dict[str, Any] | None = None, office_key_id: int | None = None,
              client_addr: str | None = None, *, supersedes: IssuedNotice | None = None,
              reason: str | None = None, batch_id: int | None = None, group_key: str | None = None) -> IssuedNotice:
        """Render, sign and store one notice covering case_ids; record it in each case's history.

        :raises NotFoundError: unknown kind, or a case outside the actor's jurisdiction.
        :raises ForbiddenError: the actor may not issue this kind with that office.
        :raises ValidationError: cases of several groups, no office key, or bad field values.
        :raises ConflictError: a case already covered, or its step completed meanwhile.
        """
        if catalog is None or kind_code not in catalog.kinds:
            raise NotFoundError("没有这种公文")
        kind = catalog.kinds[kind_code]
        cases = self.eligibility.cases(actor, case_ids)
        found = groups(kind, cases)
        if len(found) != 1:
            raise ValidationError("所选案件须属于同一份公文", {"cases": f"{kind.name}按{GROUP_LABEL[kind.group_by]}"
                                                                  f"出具,所选案件分属 {len(found)} 份;请用批量打印"})
        group = found[0]
        office = self.eligibility.office(kind, group.region_code, office_key_id)
        self.eligibility.check_issuer(actor, kind, cases, office)
        if supersedes is None:
            self.eligibility.check_due(kind, cases)
        manifest_settings = procedure_settings(cases[0])
        params = validated_fields(kind, values or {}, manifest_settings, self.clock.now().astimezone(CHINA_TZ).date())
        if supersedes is not None:  # a correction keeps the period of the notice it replaces
            params.update({k: v for k, v in supersedes.params.items() if k in PERIOD_KEYS})
        with self.session.begin_nested():  # a failure below leaves no step completed and nothing stored
            return self._issue(actor, kind, catalog, cases, group, office, params, manifest_settings,
                               client_addr, supersedes, reason, batch_id, group_key)

    def _issue(self, actor: Actor, kind: NoticeKind, catalog: NoticeCatalog, cases: list[Case], group: Group,
               office: OfficeKey, params: dict[str, Any], manifest_settings: dict[str, Any], client_addr: str | None,
               supersedes: IssuedNotice | None, reason: str | None, batch_id: int | None,
               group_key: str | None) -> IssuedNotice:
        now = self.clock.now()
        serial = self._new_serial(now)
        steps = {} if supersedes is not None else self._complete_steps(actor, kind, cases, serial)
        period = period_of(now, [t for _row, timers in steps.values() for t in timers])
        params.update(period)
        context = self.contexts.build(kind, group, office, params, serial, now, manifest_settings)
        env = self.renderer.jinja(catalog)
        title = env.from_string(kind.title).render(**context).strip()
        context["notice"]["title"] = title
        rendered = self.renderer.render(env.get_template(kind.template).render(**context), catalog)
        region = self.session.get(Region, office.region_code)
        signed = sign.sign_pdf(rendered.pdf, self.keys.signer(office), page=rendered.seal_page, box=rendered.seal_box,
                               reason=f"{kind.name} {serial}", location=region.name if region else office.region_code)

        notice = IssuedNotice(
            serial=serial, procedure_code=kind.procedure_code, kind=kind.code, kind_name=kind.name[:40],
            title=title[:300], public=kind.public, region_code=group.region_code, office_key_id=office.id,
            office_name=office.office_name, issued_by_id=actor.user_id, issued_at=now,
            document_date=context["notice"]["date"].isoformat(), params=params,
            covers=[cover(c, kind.public) for c in cases], template_sha256=catalog.content_sha256,
            sha256=hashlib.sha256(signed).hexdigest(), size_bytes=len(signed), page_count=rendered.page_count,
            supersedes_id=supersedes.id if supersedes else None, reissue_reason=reason,
            batch_id=batch_id, group_key=group_key or group.key, pdf=signed,
        )
        self.session.add(notice)
        self.session.flush()
        detail = {"serial": serial, "kind": kind.code, "title": title, "sha256": notice.sha256,
                  "office": office.office_name,
                  **({"period": [period["period_start"], period["period_end"]]} if period else {}),
                  **({"supersedes": supersedes.serial} if supersedes else {})}
        for case in cases:
            row = steps[case.id][0] if case.id in steps else None
            self.session.add(IssuedNoticeCase(notice_id=notice.id, case_id=case.id))
            self.audit.record(NOTICE_ACTION, case_id=case.id, task=row, user_id=actor.user_id,
                              step=row.title if row else kind.name, opinion=reason, detail=dict(detail),
                              client_addr=client_addr, at=now)
        self.session.flush()
        return notice

    def _complete_steps(self, actor: Actor, kind: NoticeKind, cases: list[Case],
                        serial: str) -> dict[int, tuple[TaskRow, list[TimerRow]]]:
        """Complete the open issuance step of each case (none for a kind no step issues).

        :raises ConflictError: a case's step was completed meanwhile (someone else issued it).
        """
        if not self.eligibility.issuance_steps(kind):
            return {}
        done = {}
        for case in cases:
            completed = self.cases.complete_issuance(case.id, kind.code, actor, serial)
            if completed is None:
                raise ConflictError(f"{case.subject.name} 的{kind.name}已由他人出具,请刷新后重试")
            done[case.id] = completed
        return done

    def reissue(self, actor: Actor, old: IssuedNotice, catalog: NoticeCatalog | None, reason: str,
                values: dict[str, Any] | None = None, client_addr: str | None = None) -> IssuedNotice:
        """Issue old again under a new serial (current data, the office's current key); old is superseded.

        :raises ConflictError: it was already superseded.
        :raises ValidationError: no reason given, or the office has no active key.
        """
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError("请填写重新签发的原因", {"reason": "必须填写原因"})
        if len(reason) > MAX_REASON_LENGTH:
            raise ValidationError("原因过长", {"reason": f"不能超过 {MAX_REASON_LENGTH} 字"})
        if self.session.scalar(select(IssuedNotice.id).where(IssuedNotice.supersedes_id == old.id)) is not None:
            raise ConflictError("该公文已被重新签发,请在最新的一份上操作")
        current = self.keys.active(old.office.office_code)
        if current is None:
            raise ValidationError("原签章单位已没有有效证书", {"office": "请先为该单位生成或导入证书"})
        case_ids = [c["case_id"] for c in old.covers]
        return self.issue(actor, catalog, old.kind, case_ids, {**old.params, **(values or {})},
                          office_key_id=current.id, client_addr=client_addr, supersedes=old, reason=reason)

    def _new_serial(self, now: datetime) -> str:
        year = now.astimezone(CHINA_TZ).year
        while True:
            token = "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(8))
            serial = f"XF{year}-{token[:4]}-{token[4:]}"
            if not self.session.scalar(select(func.count(IssuedNotice.id)).where(IssuedNotice.serial == serial)):
                return serial
