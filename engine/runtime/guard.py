"""The duplicate guard: a procedure may allow one running case per subject.

A procedure declares it in its procedure.json (``"one_running_case_per_subject": true``; the shipped ones
do). Every start asks here: ``CaseService.start_case`` (发起流程, the API, 批量发起) refuses a second case
naming the running one, and a linked start (``startsProcedure``) for a subject that already has a running
case of the linked procedure is skipped and recorded in the starting case's history instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.core.errors import ConflictError
from engine.models import Case, CaseStatus, ProcedureVersion, Subject

GUARD_KEY = "one_running_case_per_subject"


class DuplicateCaseError(ConflictError):
    """The subject already has a running case of a procedure that allows only one; names it."""

    def __init__(self, message: str, case_id: int):
        super().__init__(message)
        self.errors = {"subject": message}
        self.case_id = case_id


def running_case(session: Session, procedure_id: int, subject_id: int) -> Case | None:
    """The subject's running case of the procedure (any version), if there is one."""
    return session.scalar(
        select(Case).join(ProcedureVersion, Case.procedure_version_id == ProcedureVersion.id)
        .where(ProcedureVersion.procedure_id == procedure_id, Case.subject_id == subject_id,
               Case.status == CaseStatus.running).order_by(Case.id).limit(1))


def guarded_running_case(session: Session, manifest: dict, version: ProcedureVersion, subject: Subject) -> Case | None:
    """The running case that makes a new start of version for subject a duplicate, or None (also when the
    procedure does not guard). On PostgreSQL the subject row is locked first: two starts for one subject
    are decided one at a time."""
    if not manifest.get(GUARD_KEY, False):
        return None
    if session.get_bind().dialect.name == "postgresql":
        session.scalar(select(Subject.id).where(Subject.id == subject.id).with_for_update())
    return running_case(session, version.procedure_id, subject.id)


def check_no_running_case(session: Session, manifest: dict, version: ProcedureVersion, subject: Subject) -> None:
    """:raises DuplicateCaseError: the procedure allows one running case per subject and one runs."""
    running = guarded_running_case(session, manifest, version, subject)
    if running is not None:
        raise DuplicateCaseError(f"{subject.name}已有办理中的「{version.procedure.name}」案件(编号 {running.id}),"
                                 "不能重复发起", running.id)
