"""Starting a case for a registered subject, with the duplicate guard.

A procedure may declare in its procedure.json ``"one_running_case_per_subject": true`` (the shipped ones do):
a subject then has at most one running case of it, and starting a second one is refused naming the case
that runs. A deactivated subject starts nothing. The case itself is started by the runtime
(``CaseService.start_case``), unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, ValidationError, XiangFlowError
from engine.models import Case, CaseStatus, ProcedureVersion, Subject
from engine.registry.service import RegistryService

GUARD_KEY = "one_running_case_per_subject"


class DuplicateCaseError(ConflictError):
    """The subject already has a running case of a procedure that allows only one; names it."""

    def __init__(self, message: str, case_id: int):
        super().__init__(message)
        self.errors = {"subject": message}
        self.case_id = case_id


class StartService:
    def __init__(self, session: Session, definitions, cases, registry: RegistryService):
        self.session = session
        self.definitions = definitions
        self.cases = cases
        self.registry = registry

    def guarded(self, procedure_code: str) -> bool:
        """Whether the newest version of the procedure allows one running case per subject only."""
        return bool(self.definitions.manifest(self.definitions.latest(procedure_code)).get(GUARD_KEY, False))

    def running_case(self, procedure_id: int, subject_id: int) -> Case | None:
        """The subject's running case of the procedure (any version), if there is one."""
        return self.session.scalar(
            select(Case).join(ProcedureVersion, Case.procedure_version_id == ProcedureVersion.id)
            .where(ProcedureVersion.procedure_id == procedure_id, Case.subject_id == subject_id,
                   Case.status == CaseStatus.running).order_by(Case.id).limit(1))

    def start(self, procedure_code: str, subject_id: int, actor: Actor, data: dict[str, Any] | None = None,
              client_addr: str | None = None) -> Case:
        """Start a case for a registered, active subject unless the duplicate guard refuses it.

        :raises NotFoundError: unknown procedure, or a subject outside the actor's jurisdiction.
        :raises ValidationError: the subject is deactivated.
        :raises DuplicateCaseError: the procedure allows one running case per subject and one runs.
        :raises ForbiddenError: as ``CaseService.start_case``.
        """
        version = self.definitions.latest(procedure_code)
        subject = self.registry.get(subject_id, actor)
        if self.session.get_bind().dialect.name == "postgresql":  # two starts for one subject: one at a time
            self.session.scalar(select(Subject.id).where(Subject.id == subject.id).with_for_update())
        if not subject.is_active:
            raise ValidationError("该对象已停用", {"subject": f"{subject.name}已停用,不能发起流程"})
        if self.definitions.manifest(version).get(GUARD_KEY, False):
            running = self.running_case(version.procedure_id, subject.id)
            if running is not None:
                raise DuplicateCaseError(f"{subject.name}已有办理中的「{version.procedure.name}」案件(编号 {running.id}),"
                                         "不能重复发起", running.id)
        return self.cases.start_case(procedure_code, subject.id, actor, data=data, client_addr=client_addr)

    def start_many(self, procedure_code: str, subject_ids: list[int], actor: Actor,
                   client_addr: str | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
        """Start the procedure for many subjects in the caller's one transaction (定期预判 of a village): those
        with a running case of it are skipped and reported; any other refusal refuses the whole batch.

        :returns: (started (subject_id, case_id) pairs, skipped (subject_id, running case_id, reason) triples).
        :raises NotFoundError: unknown procedure.
        :raises ValidationError: no subjects, too many, or one that cannot start (names it); nothing is started.
        """
        if not subject_ids or len(subject_ids) > MAX_BATCH:
            raise ValidationError("批量发起的对象数无效", {"subject_ids": f"一次 1 到 {MAX_BATCH} 个对象"})
        self.definitions.latest(procedure_code)  # an unknown procedure is NotFoundError, not a subject's fault
        started, skipped = [], []
        for subject_id in dict.fromkeys(subject_ids):
            try:
                started.append((subject_id, self.start(procedure_code, subject_id, actor, client_addr=client_addr).id))
            except DuplicateCaseError as exc:
                skipped.append((subject_id, exc.case_id, str(exc)))
            except XiangFlowError as exc:
                raise ValidationError(f"对象 {subject_id} 不能发起,整批未发起:{exc}",
                                      {"subject_ids": f"对象 {subject_id}:{exc}"}) from exc
        return started, skipped


MAX_BATCH = 500
