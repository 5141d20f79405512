"""Which cases a notice may cover and who may sign it: due cases, grouping, the issuer and office checks.

A kind that a BPMN user task names in its ``noticeKind`` property is issued at that step (出具村级公示,
出具县级公告): a case is due while that step is open. Other kinds are due at the open steps or in the
case statuses their ``notices.json`` entry lists. A case already covered by a current notice of the
kind gets a reissue, not a second notice — except at an open issuance step (an objection sent the case
back, and a new period needs a new notice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from engine.access.assignment import Actor, region_prefix
from engine.access.policy import AccessPolicy
from engine.access.regions import ancestor_at
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import (
    Case,
    IssuedNotice,
    IssuedNoticeCase,
    OfficeKey,
    Procedure,
    ProcedureVersion,
    Region,
    TaskRow,
    TaskStatus,
)
from engine.procedures.notice_catalog import GROUP_LEVELS, NoticeKind
from engine.procedures.steps import properties_of


@dataclass
class Group:
    """The cases one notice covers (one case, or the cases of one village/township/county)."""

    key: str
    region_code: str
    cases: list[Case] = field(default_factory=list)


GROUP_LABEL = {"case": "案件", "village": "村", "township": "乡镇", "county": "县"}


def groups(kind: NoticeKind, cases: list[Case]) -> list[Group]:
    """Split cases into one group per notice (per case, or per village/township/county)."""
    found: dict[str, Group] = {}
    for case in cases:
        if kind.group_by == "case":
            key, region = f"case:{case.id}", case.region_code
        else:
            region = ancestor_at(case.region_code, GROUP_LEVELS[kind.group_by])
            key = f"{kind.group_by}:{region}"
        found.setdefault(key, Group(key, region)).cases.append(case)
    return list(found.values())


def may_issue(actor: Actor, kind: NoticeKind) -> bool:
    return any(g.role_code in kind.issuer_roles for g in actor.grants)


class Eligibility:
    """Due cases, issuance steps, the cases an actor may select and the office that may sign."""

    def __init__(self, session: Session, definitions):
        self.session = session
        self.definitions = definitions
        self._issuance_steps: dict[tuple[str, str], frozenset[str]] = {}  # per kind, for this unit of work

    def issuance_steps(self, kind: NoticeKind) -> frozenset[str]:
        """BPMN ids of the user steps, in any version of the kind's procedure, that issue this kind (``noticeKind``).

        Asked several times per issue and per due-case query; the versions' specs are walked once."""
        key = (kind.procedure_code, kind.code)
        if key not in self._issuance_steps:
            steps: set[str] = set()
            versions = self.session.scalars(select(ProcedureVersion).join(Procedure)
                                            .where(Procedure.code == kind.procedure_code))
            for version in versions:
                spec, subprocess_specs = self.definitions.specs(version)
                for process in (spec, *subprocess_specs.values()):
                    for task_spec in process.task_specs.values():
                        if properties_of(task_spec).notice_kind == kind.code:
                            steps.add(task_spec.bpmn_id)
            self._issuance_steps[key] = frozenset(steps)
        return self._issuance_steps[key]

    def due_cases(self, actor: Actor, kind: NoticeKind, region_code: str | None = None,
                  include_covered: bool = False) -> list[Case]:
        """Cases in the actor's jurisdiction whose notice of this kind is due and not yet issued."""
        prefixes = [g.prefix for g in actor.grants if g.role_code in kind.issuer_roles]
        if not prefixes:
            return []
        stmt = (select(Case).join(Case.version).join(Procedure)
                .where(Procedure.code == kind.procedure_code)
                .where(or_(*[Case.region_code.startswith(p) for p in prefixes])))
        if region_code:
            stmt = stmt.where(Case.region_code.startswith(region_prefix(region_code)))
        conditions = self.due_conditions(kind)
        if conditions:
            stmt = stmt.where(or_(*conditions))
        if not include_covered and not self.issuance_steps(kind):  # an open issuance step is due even after
            # an earlier notice (an objection sent the case back, and a new period needs a new notice)
            stmt = stmt.where(Case.id.not_in(self._current_cover(kind)))
        return list(self.session.scalars(stmt.order_by(Case.region_code, Case.id)))

    def _current_cover(self, kind: NoticeKind):
        """The ids of the cases a current (not superseded) notice of this kind covers, as a subquery."""
        superseding = aliased(IssuedNotice)
        return (select(IssuedNoticeCase.case_id).join(IssuedNotice)
                .where(IssuedNotice.procedure_code == kind.procedure_code, IssuedNotice.kind == kind.code)
                .where(~exists().where(superseding.supersedes_id == IssuedNotice.id)))

    def due_conditions(self, kind: NoticeKind) -> list:
        """When a case needs this notice: at its open issuance step (or another open step), or in a status."""
        conditions: list[Any] = []
        steps = self.issuance_steps(kind) | set(kind.due_open_steps)
        if steps:
            conditions.append(exists().where(TaskRow.case_id == Case.id, TaskRow.status == TaskStatus.open,
                                             TaskRow.spec_name.in_(steps)))
        if kind.due_statuses:
            conditions.append(Case.status.in_(kind.due_statuses))
        return conditions

    def cases(self, actor: Actor, case_ids: Iterable[int]) -> list[Case]:
        """The selected cases, each inside the actor's jurisdiction (or started by them).

        :raises ValidationError: none selected.
        :raises NotFoundError: an unknown case or one outside the jurisdiction.
        """
        ids = sorted({int(i) for i in case_ids})
        if not ids:
            raise ValidationError("请选择案件", {"cases": "至少选择一个案件"})
        cases = list(self.session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.region_code, Case.id)))
        if len(cases) != len(ids) or not all(AccessPolicy.takes_part(c, actor) for c in cases):
            raise NotFoundError("案件不存在")
        return cases

    def offices_for(self, kind: NoticeKind, region_code: str) -> list[OfficeKey]:
        """Active office keys at the kind's office level whose region contains region_code."""
        office_region = ancestor_at(region_code, kind.office_level)
        return list(self.session.scalars(
            select(OfficeKey).where(OfficeKey.region_code == office_region, OfficeKey.retired_at.is_(None))
            .order_by(OfficeKey.office_name)))

    def office(self, kind: NoticeKind, region_code: str, office_key_id: int | None) -> OfficeKey:
        """The office key that signs a notice for region_code: the chosen one, else the first active one.

        :raises ValidationError: the chosen key cannot sign it, or there is none.
        """
        candidates = self.offices_for(kind, region_code)
        if office_key_id is not None:
            chosen = next((o for o in candidates if o.id == int(office_key_id)), None)
            if chosen is None:
                raise ValidationError("所选签章单位不可用", {"office": "该单位不能签发这份公文,或证书已停用"})
            return chosen
        if not candidates:
            office_region = ancestor_at(region_code, kind.office_level)
            region = self.session.get(Region, office_region)
            name = region.name if region else region_code
            raise ValidationError("没有可用的签章证书", {
                "office": f"{name}尚无签章证书:请管理员运行 flask notices keygen --office {office_region}/单位名称"})
        return candidates[0]

    def check_issuer(self, actor: Actor, kind: NoticeKind, cases: list[Case], office: OfficeKey) -> None:
        """:raises ValidationError: a case of another procedure or outside the office's region.
        :raises ForbiddenError: the actor holds no issuer role covering the office and every case."""
        for case in cases:
            if case.version.procedure.code != kind.procedure_code:
                raise ValidationError("案件不属于该流程", {"cases": f"{case.title} 不是{kind.name}所属流程的案件"})
            if not case.region_code.startswith(region_prefix(office.region_code)):
                raise ValidationError("签章单位不管辖该案件", {"office": f"{office.office_name} 不管辖 {case.title}"})
        allowed = [g for g in actor.grants if g.role_code in kind.issuer_roles
                   and office.region_code.startswith(g.prefix)
                   and all(c.region_code.startswith(g.prefix) for c in cases)]
        if not allowed:
            raise ForbiddenError(f"您无权以 {office.office_name} 的名义签发{kind.name}")

    def check_due(self, kind: NoticeKind, cases: list[Case]) -> None:
        """A new notice only for cases at the right point, and not for one already covered (reissue instead).

        For a kind issued at a BPMN step, the open step is the rule (a case sent back by an objection
        needs a new notice although an earlier one covers it); completing that step under the case
        lock refuses a second issue.

        :raises ValidationError: a case not at the point where this notice is due.
        :raises ConflictError: a case already covered by a current notice of the kind.
        """
        ids = [c.id for c in cases]
        at_step = bool(self.issuance_steps(kind))
        superseding = aliased(IssuedNotice)
        covered: list[tuple[int, str]] = [tuple(row) for row in self.session.execute(
            select(IssuedNoticeCase.case_id, IssuedNotice.serial).join(IssuedNotice)
            .where(IssuedNoticeCase.case_id.in_(ids), IssuedNotice.procedure_code == kind.procedure_code,
                   IssuedNotice.kind == kind.code)
            .where(~exists().where(superseding.supersedes_id == IssuedNotice.id)))]
        conditions = self.due_conditions(kind)
        if conditions:
            due = set(self.session.scalars(select(Case.id).where(Case.id.in_(ids), or_(*conditions))))
            not_due = [c for c in cases if c.id not in due]
            if at_step:  # at its open step a case is due even if covered; past it, a covered case needs a reissue
                covered = [(case_id, serial) for case_id, serial in covered if case_id not in due]
                not_due = [c for c in not_due if c.id not in {case_id for case_id, _serial in covered}]
            if not_due:
                raise ValidationError("案件尚未到出具该公文的环节", {
                    "cases": f"{'、'.join(c.subject.name for c in not_due)} 当前不需要{kind.name}"})
        if covered:
            serials = "、".join(sorted({serial for _case, serial in covered}))
            raise ConflictError(f"所选案件已有{kind.name}(编号 {serials});如需更正请重新签发该份")
