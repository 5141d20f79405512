"""Starting cases for registered subjects: one (发起流程, the API) or many in one transaction (the API's batch).

The duplicate guard (``one_running_case_per_subject`` in procedure.json) and the refusal of a deactivated
subject are held by the runtime's ``CaseService.start_case`` (engine/runtime/guard.py), so every start —
these, 批量发起 and linked starts — obeys them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ValidationError, XiangFlowError
from engine.models import Case
from engine.registry.service import RegistryService
from engine.runtime.guard import GUARD_KEY, DuplicateCaseError, running_case

__all__ = ["DuplicateCaseError", "StartService", "MAX_BATCH"]

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
        return running_case(self.session, procedure_id, subject_id)

    def start(self, procedure_code: str, subject_id: int, actor: Actor, data: dict[str, Any] | None = None,
              client_addr: str | None = None) -> Case:
        """Start a case for a registered, active subject inside the actor's jurisdiction (the runtime's
        ``start_case``, which holds the duplicate guard and refuses a deactivated subject).

        :raises NotFoundError: unknown procedure, or a subject outside the actor's jurisdiction.
        :raises ValidationError: the subject is deactivated.
        :raises DuplicateCaseError: the procedure allows one running case per subject and one runs.
        :raises ForbiddenError: as ``CaseService.start_case``.
        """
        self.definitions.latest(procedure_code)  # an unknown procedure is NotFoundError before the subject
        subject = self.registry.get(subject_id, actor)
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
