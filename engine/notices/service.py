"""Signed PDF notices: 公示, 公告, 退出告知书, 审批表 — the service the web layer, the CLI and batches call.

``NoticeService`` is the one entry point; each idea lives in its own module of this package:
the catalog of a procedure's notices (engine/procedures/notice_catalog.py), which cases are due and who
may sign (eligibility.py), the fields an issuer fills in (fields.py), the template context (context.py),
issuing and reissuing (issue.py), HTML → PDF (render.py, fonts.py, images.py), signing (sign.py),
verification (verify.py), office keys (pki.py) and running batches (batches.py). No Flask here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, undefer

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, NotFoundError, ValidationError
from engine.models import (
    Case,
    IssuedNotice,
    IssuedNoticeCase,
    NoticeBatch,
    NoticeBatchStatus,
    OfficeKey,
    Procedure,
    TaskRow,
    TaskStatus,
)
from engine.notices import verify
from engine.notices.context import public_url
from engine.notices.eligibility import Eligibility, Group, groups, may_issue
from engine.notices.fields import procedure_settings, validated_fields
from engine.notices.issue import NoticeIssuer
from engine.notices.pki import KeyStore
from engine.notices.render import RENDERER, NoticeRenderer
from engine.notices.verify import SignatureReport, UploadCheck
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.notice_catalog import NoticeCatalog, NoticeKind, load_catalog
from engine.runtime.cases import CaseService

MAX_TASKS = 500  # tasks one API issuance may name (a county 公告 covers many cases)


@dataclass(frozen=True)
class StepNotice:
    """A notice handed over at an open step: its kind, the one issued for the case (or None), who may issue."""

    kind: NoticeKind
    issued: IssuedNotice | None
    may_issue: bool


class NoticeService:
    """Issues, stores and verifies notices. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, keys: KeyStore | None = None, base_url: str | None = None,
                 renderer: NoticeRenderer | None = None, cases: CaseService | None = None):
        self.session = session
        self.clock = clock
        self.cases = cases or CaseService(session, clock)
        self.keys = keys or KeyStore(session, clock)
        self.base_url = (base_url or public_url()).rstrip("/")
        self.renderer = renderer or RENDERER
        self.eligibility = Eligibility(session, self.cases.definitions)
        self.issuer = NoticeIssuer(session, clock, self.cases, self.keys, self.renderer, self.eligibility,
                                   self.base_url)

    # ------------------------------------------------------------------ catalog
    def catalogs(self) -> list[tuple[Procedure, NoticeCatalog]]:
        """Procedures that have notice templates, with their kinds."""
        out = []
        for procedure in self.session.scalars(select(Procedure).order_by(Procedure.code)):
            catalog = self.catalog(procedure.code)
            if catalog and catalog.kinds:
                out.append((procedure, catalog))
        return out

    def catalog(self, procedure_code: str) -> NoticeCatalog | None:
        """The notice kinds and templates of the procedure's current version (None: it issues none).

        :raises ValidationError: its notices.json is malformed.
        """
        return load_catalog(self.cases.definitions, procedure_code)

    def kind(self, procedure_code: str, kind_code: str) -> NoticeKind:
        """A notice kind of a procedure.

        :raises NotFoundError: no such procedure or kind.
        """
        catalog = self.catalog(procedure_code)
        if catalog is None or kind_code not in catalog.kinds:
            raise NotFoundError("没有这种公文")
        return catalog.kinds[kind_code]

    def may_issue(self, actor: Actor, kind: NoticeKind) -> bool:
        return may_issue(actor, kind)

    def step_notices(self, row: TaskRow, actor: Actor) -> list[StepNotice]:
        """The notices due at the row's open step (``due.open_steps`` in notices.json, e.g. 退出告知书 at 退出告知)
        that the step's holder hands over: each with the one already issued for the case, if any, and whether
        the actor may issue it. Issuance steps (``noticeKind``) are not listed: issuing completes those."""
        if row.status != TaskStatus.open:
            return []
        catalog = self.catalog(row.case.version.procedure.code)
        kinds = [k for k in (catalog.kinds.values() if catalog else []) if row.spec_name in k.due_open_steps
                 and row.spec_name not in self.issuance_steps(k)]
        if not kinds:
            return []
        issued = {n.kind: n for n in self.case_notices(row.case_id)}  # the newest of each kind wins
        return [StepNotice(k, issued.get(k.code), may_issue(actor, k)) for k in kinds]

    # ------------------------------------------------------------------ which cases
    def issuance_steps(self, kind: NoticeKind) -> frozenset[str]:
        """BPMN ids of the user steps that issue this kind (``noticeKind``)."""
        return self.eligibility.issuance_steps(kind)

    def due_cases(self, actor: Actor, kind: NoticeKind, region_code: str | None = None,
                  include_covered: bool = False) -> list[Case]:
        """Cases in the actor's jurisdiction whose notice of this kind is due and not yet issued."""
        return self.eligibility.due_cases(actor, kind, region_code, include_covered)

    def groups(self, kind: NoticeKind, cases: list[Case]) -> list[Group]:
        """Split cases into one group per notice (per case, or per village/township/county)."""
        return groups(kind, cases)

    def offices_for(self, kind: NoticeKind, region_code: str) -> list[OfficeKey]:
        """Active office keys at the kind's office level whose region contains region_code."""
        return self.eligibility.offices_for(kind, region_code)

    def issuance_of_tasks(self, actor: Actor, task_ids: Iterable[int]) -> tuple[str, str, list[int]]:
        """The (procedure, kind, case ids) that open 出具 steps name, for issuing by task (the API).

        :raises NotFoundError: a task that is not the actor's (``AccessPolicy.task_of``).
        :raises ConflictError: a task already completed.
        :raises ValidationError: none or too many, a task that does not issue a notice, or steps of several kinds.
        """
        ids = list(dict.fromkeys(task_ids))
        if not ids or len(ids) > MAX_TASKS:
            raise ValidationError("任务数无效", {"task_ids": f"一次 1 到 {MAX_TASKS} 个出具公示/公告的任务"})
        kinds, case_ids = set(), []
        for task_id in ids:
            row = self.cases.access.task_of(task_id, actor)
            kind_code = self.cases.issuance_kind(row) if row.status == TaskStatus.open else None
            if row.status != TaskStatus.open:
                raise ConflictError(f"任务「{row.title}」已办理")
            if kind_code is None:
                raise ValidationError("不是出具公示/公告的步骤", {"task_ids": f"任务「{row.title}」不是出具公示/公告的步骤"})
            kinds.add((row.case.version.procedure.code, kind_code))
            case_ids.append(row.case_id)
        if len(kinds) > 1:
            raise ValidationError("请选择同一种公示/公告的任务", {"task_ids": "所选任务属于不同的公示/公告种类"})
        ((procedure_code, kind_code),) = kinds
        return procedure_code, kind_code, list(dict.fromkeys(case_ids))

    # ------------------------------------------------------------------ issue
    def issue(self, actor: Actor, procedure_code: str, kind_code: str, case_ids: Iterable[int],
              values: dict[str, Any] | None = None, office_key_id: int | None = None,
              client_addr: str | None = None, *, supersedes: IssuedNotice | None = None,
              reason: str | None = None, batch_id: int | None = None, group_key: str | None = None) -> IssuedNotice:
        """Render, sign and store one notice covering case_ids; record it in each case's history
        (engine/notices/issue.py).

        :raises NotFoundError: unknown kind, or a case outside the actor's jurisdiction.
        :raises ForbiddenError: the actor may not issue this kind with that office.
        :raises ValidationError: cases of several groups, no office key, or bad field values.
        :raises ConflictError: a case already covered, or its step completed meanwhile.
        """
        return self.issuer.issue(actor, self.catalog(procedure_code), kind_code, case_ids, values, office_key_id,
                                 client_addr, supersedes=supersedes, reason=reason, batch_id=batch_id,
                                 group_key=group_key)

    def reissue(self, actor: Actor, serial: str, reason: str, values: dict[str, Any] | None = None,
                client_addr: str | None = None) -> IssuedNotice:
        """Issue a notice again under a new serial (current data, the office's current key); the old one is superseded.

        :raises NotFoundError: no such notice in the actor's jurisdiction.
        :raises ConflictError: it was already superseded.
        :raises ValidationError: no reason given.
        """
        old = self.get_for(actor, serial)
        return self.issuer.reissue(actor, old, self.catalog(old.procedure_code), reason, values, client_addr)

    # ------------------------------------------------------------------ reading
    def get_public(self, serial: str) -> IssuedNotice:
        """A notice by serial, for the public verification page.

        :raises NotFoundError: no such serial.
        """
        notice = self.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == (serial or "").upper().strip()))
        if notice is None:
            raise NotFoundError("没有这个编号的公文")
        return notice

    def get_for(self, actor: Actor, serial: str) -> IssuedNotice:
        """A notice the actor may manage: its region inside the actor's jurisdiction.

        :raises NotFoundError: no such notice, or outside the jurisdiction.
        """
        notice = self.get_public(serial)
        if not self.may_view(actor, notice):
            raise NotFoundError("没有这个编号的公文")
        return notice

    def may_view(self, actor: Actor, notice: IssuedNotice) -> bool:
        """Whether the actor may manage notice: its region inside their jurisdiction, or they issued it."""
        return actor.covers(notice.region_code) or notice.issued_by_id == actor.user_id

    def superseded_by(self, notice: IssuedNotice) -> IssuedNotice | None:
        return self.session.scalar(select(IssuedNotice).where(IssuedNotice.supersedes_id == notice.id))

    def supersedes(self, notice: IssuedNotice) -> IssuedNotice | None:
        return self.session.get(IssuedNotice, notice.supersedes_id) if notice.supersedes_id else None

    def pdf(self, notice: IssuedNotice) -> bytes:
        data = self.session.scalar(select(IssuedNotice.pdf).where(IssuedNotice.id == notice.id))
        if data is None:
            raise NotFoundError("没有这个编号的公文")
        return data

    def list_for(self, actor: Actor, limit: int = 200) -> list[IssuedNotice]:
        prefixes = {g.prefix for g in actor.grants}
        if not prefixes:
            return []
        stmt = (select(IssuedNotice).where(or_(*[IssuedNotice.region_code.startswith(p) for p in prefixes]))
                .order_by(IssuedNotice.issued_at.desc(), IssuedNotice.id.desc()).limit(limit))
        return list(self.session.scalars(stmt))

    def case_notices(self, case_id: int) -> list[IssuedNotice]:
        return list(self.session.scalars(
            select(IssuedNotice).join(IssuedNoticeCase).where(IssuedNoticeCase.case_id == case_id)
            .order_by(IssuedNotice.issued_at, IssuedNotice.id)))

    def superseded_ids(self, notices: Iterable[IssuedNotice]) -> set[int]:
        ids = [n.id for n in notices]
        if not ids:
            return set()
        return set(self.session.scalars(select(IssuedNotice.supersedes_id).where(IssuedNotice.supersedes_id.in_(ids))))

    # ------------------------------------------------------------------ verification
    def check_upload(self, serial: str, data: bytes) -> UploadCheck:
        """Compare an uploaded file with the notice issued under serial (SHA-256), and say what it is."""
        notice = self.get_public(serial)
        digest = hashlib.sha256(data).hexdigest()
        if digest == notice.sha256:
            return UploadCheck(notice, digest, True, None, None)
        other = self.session.scalar(select(IssuedNotice.serial).where(IssuedNotice.sha256 == digest).limit(1))
        report = verify.validate_signature(data, self.keys.trust_roots()) if data[:5] == b"%PDF-" else None
        return UploadCheck(notice, digest, False, other, report)

    def validate(self, notice: IssuedNotice) -> SignatureReport:
        """pyHanko's verdict on a stored notice (trusting the demo CA and the roots admins trust)."""
        return verify.validate_signature(self.pdf(notice), self.keys.trust_roots())

    # ------------------------------------------------------------------ batches
    def create_batch(self, actor: Actor, procedure_code: str, kind_code: str, case_ids: Iterable[int],
                     values: dict[str, Any] | None = None) -> NoticeBatch:
        """Queue a batch issuing one notice per group of the selected cases; nothing is rendered yet.

        Every group is checked first (jurisdiction, office key, fields), so a batch does not fail
        half-way for a reason known up front.

        :raises NotFoundError: unknown kind or a case outside the jurisdiction.
        :raises ForbiddenError: the actor may not issue this kind for some group.
        :raises ValidationError: no cases, a group without an office key, or bad field values.
        """
        kind = self.kind(procedure_code, kind_code)
        cases = self.eligibility.cases(actor, case_ids)
        found = groups(kind, cases)
        missing, not_due = {}, []
        for group in found:
            try:
                office = self.eligibility.office(kind, group.region_code, None)
            except ValidationError as exc:
                missing[group.key] = exc.errors.get("office", str(exc))
                continue
            self.eligibility.check_issuer(actor, kind, group.cases, office)
            try:
                self.eligibility.check_due(kind, group.cases)
            except ValidationError as exc:
                not_due.append(exc.errors.get("cases", str(exc)))
            except ConflictError as exc:
                not_due.append(str(exc))
        if missing:
            raise ValidationError("部分公文没有可用的签章证书", {"office": "；".join(sorted(set(missing.values())))})
        if not_due:
            raise ValidationError("部分案件不能出具该公文", {"cases": "；".join(not_due)})
        params = validated_fields(kind, values or {}, procedure_settings(cases[0]),
                                  self.clock.now().astimezone(CHINA_TZ).date())
        batch = NoticeBatch(
            procedure_code=procedure_code, kind=kind.code, created_by_id=actor.user_id, created_at=self.clock.now(),
            status=NoticeBatchStatus.queued, total=len(found), done_count=0, failed_count=0,
            params={"case_ids": [c.id for c in cases], "values": params, "base_url": self.base_url}, errors=[],
        )
        self.session.add(batch)
        self.session.flush()
        return batch

    def get_batch(self, actor: Actor, batch_id: int) -> NoticeBatch:
        """A batch the actor created.

        :raises NotFoundError: no such batch, or someone else's.
        """
        batch = self.session.get(NoticeBatch, batch_id)
        if batch is None or batch.created_by_id != actor.user_id:
            raise NotFoundError("批量任务不存在")
        return batch

    def batch_notices(self, batch: NoticeBatch, with_pdf: bool = False) -> list[IssuedNotice]:
        stmt = select(IssuedNotice).where(IssuedNotice.batch_id == batch.id).order_by(IssuedNotice.id)
        if with_pdf:
            stmt = stmt.options(undefer(IssuedNotice.pdf))
        return list(self.session.scalars(stmt))
