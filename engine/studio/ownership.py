"""Who may change a studio procedure, and the studio's audit rows.

A procedure made in the studio belongs to the region of the admin grant that made it; a shipped one
(owner NULL) only to an admin covering every province (the rule itself is
engine/access/policy.py ``AccessPolicy.may_change_procedure``). A draft of an existing procedure follows that
procedure's owner; a draft of a new code carries its own (``ProcedureDraft.owner_region_code``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor, procedure_serves
from engine.access.policy import AccessPolicy
from engine.core.errors import ForbiddenError, ValidationError
from engine.models import Procedure, ProcedureDraft, Region, Role
from engine.models.audit import AuditLog
from engine.procedures.definitions import DefinitionService
from engine.runtime.cases import CaseService

SYSTEM_OWNER_NAME = "全省/系统"  # how the owner of a shipped (system-wide) procedure is shown


class StudioOwnership:
    """The studio's collaborators, admin and ownership rules, audit; the other studio parts build on it."""

    def __init__(self, session: Session, clock, definitions: DefinitionService | None = None,
                 cases: CaseService | None = None):
        self.session = session
        self.clock = clock
        self.definitions = definitions or DefinitionService(session, clock)
        self.cases = cases or CaseService(session, clock, self.definitions)
        self._roots: list[str] | None = None

    # -- access and audit
    @staticmethod
    def require_admin(actor: Actor) -> None:
        if not actor.is_admin:
            raise ForbiddenError("只有管理员可以使用流程设计")

    # -- ownership (the rule itself is engine/access/policy.py may_change_procedure)
    def root_regions(self) -> list[str]:
        if self._roots is None:
            self._roots = list(self.session.scalars(select(Region.code).where(Region.parent_code.is_(None))))
        return self._roots

    def may_change(self, actor: Actor, owner_region_code: str | None) -> bool:
        return AccessPolicy.may_change_procedure(actor, owner_region_code, self.root_regions())

    def owner_name(self, owner_region_code: str | None) -> str:
        if owner_region_code is None:
            return SYSTEM_OWNER_NAME
        region = self.session.get(Region, owner_region_code)
        return region.name if region else owner_region_code

    def owner_choices(self, actor: Actor) -> list[tuple[str, str]]:
        """(owner code, name) a new procedure of this admin may belong to: the region of each admin grant,
        preceded by system-wide (code "") for an admin covering all regions. The first is the default."""
        self.require_admin(actor)
        choices = [("", SYSTEM_OWNER_NAME)] if self.may_change(actor, None) else []
        for grant in actor.admin_grants:
            if grant.region_code not in {c for c, _n in choices}:
                choices.append((grant.region_code, self.owner_name(grant.region_code)))
        return choices

    def _new_owner(self, actor: Actor, owner_region_code: str | None) -> str | None:
        """The owner of a new procedure code: the chosen one of ``owner_choices`` (default the first).

        :raises ValidationError: not one of the admin's choices.
        """
        choices = [code for code, _name in self.owner_choices(actor)]
        chosen = choices[0] if owner_region_code is None else owner_region_code.strip()
        if chosen not in choices:
            raise ValidationError("归属地区无效", {"owner_region_code": "只能选择您有管理员权限的地区"})
        return chosen or None

    def procedure_owner(self, code: str) -> tuple[bool, str | None]:
        """(whether a procedure with this code exists, its owner region)."""
        procedure = self.session.scalar(select(Procedure).where(Procedure.code == code))
        return (procedure is not None, procedure.owner_region_code if procedure else None)

    def draft_owner(self, draft: ProcedureDraft) -> str | None:
        """A draft's scope: its procedure's owner when the code is deployed, else the draft's own."""
        exists, owner = self.procedure_owner(draft.code)
        return owner if exists else draft.owner_region_code

    def _require_change(self, actor: Actor, owner_region_code: str | None, what: str) -> None:
        """:raises ForbiddenError: actor may not change a procedure with this owner."""
        self.require_admin(actor)
        if not self.may_change(actor, owner_region_code):
            if owner_region_code is None:
                raise ForbiddenError(f"{what}是系统内置流程,只有系统管理员可以修改;"
                                     "如需调整,请用“复制为新流程”复制为本地区的新流程")
            raise ForbiddenError(f"{what}属于{self.owner_name(owner_region_code)},您没有修改它的权限")

    def audit(self, actor: Actor | None, action: str, step: str | None = None, detail: dict[str, Any] | None = None,
              opinion: str | None = None, case_id: int | None = None, client_addr: str | None = None) -> None:
        AuditLog(self.session, self.clock).record(action, case_id=case_id, user_id=actor.user_id if actor else None,
                                                  step=step, opinion=opinion, detail=detail, client_addr=client_addr)

    def known_roles(self) -> set[str]:
        return set(self.session.scalars(select(Role.code)))

    def roles(self) -> list[Role]:
        return list(self.session.scalars(select(Role).order_by(Role.code)))

    def known_procedures(self) -> set[str]:
        return set(self.session.scalars(select(Procedure.code)))

    def linkable_procedures(self, owner_region_code: str | None) -> set[str]:
        """Codes a procedure owned by owner_region_code may start as linked cases: those serving every
        region it serves (shipped ones; a county's own when the owner lies inside that county)."""
        rows = self.session.execute(select(Procedure.code, Procedure.owner_region_code)).all()
        return {code for code, owner in rows
                if owner is None or (owner_region_code is not None and procedure_serves(owner, owner_region_code))}

