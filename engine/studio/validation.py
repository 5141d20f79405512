"""The studio's side of the procedure checks: the context it knows (roles, the procedures a draft may
link to, the data other procedures pass in), validating a draft and deploying it. The rules themselves
are engine/procedures/checks, the same registry deploy runs."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.access.assignment import Actor
from engine.core.errors import DefinitionError
from engine.models import ProcedureVersion
from engine.procedures import checks
from engine.procedures.checks import CheckContext, Problem, ProblemsError
from engine.procedures.checks.files import check_file_set
from engine.procedures.definitions import bundle_from_files, check_context
from engine.studio.drafts import StudioDrafts

DraftProblems = ProblemsError  # a draft was refused (deploy, dry run); ``details`` holds the problems


class StudioValidation(StudioDrafts):
    """Validate and deploy drafts."""

    def check_context(self, owner_region_code: str | None = None) -> CheckContext:
        """What the checks know for a draft whose scope is owner_region_code (None: system-wide)."""
        return check_context(self.known_roles(), self.known_procedures(), self.linkable_procedures(owner_region_code),
                             self.passed_in(), self.clock)

    def validate_files(self, files: dict[str, str], owner_region_code: str | None = None) -> list[Problem]:
        """Problems of a draft's files; ``owner_region_code`` is the draft's scope (None: system-wide)."""
        return checks.check(files, self.check_context(owner_region_code))

    def passed_in(self) -> dict[str, frozenset[str]]:
        """Procedure code → data keys other procedures pass when they start it (``startsProcedure`` +
        ``passData`` in their newest versions): names a draft's expressions may read."""
        return self.definitions.passed_in()

    def validate_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> list[Problem]:
        draft = self.get_draft(actor, draft_id)
        problems = self.validate_files(draft.files, self.draft_owner(draft))
        self.audit(actor, "studio_validated", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "problems": len(problems), "owner_region_code": self.draft_owner(draft)},
                   client_addr=client_addr)
        return problems

    def deploy_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> tuple[ProcedureVersion, bool]:
        """Deploy a valid draft; return (version, created). Identical content returns the existing version.

        :raises DraftProblems: the draft has problems (each naming its element); nothing is stored.
        """
        draft = self.get_draft(actor, draft_id)
        context = self.check_context(self.draft_owner(draft))
        try:
            bundle = bundle_from_files(check_file_set(draft.files))
        except DefinitionError as exc:
            raise DraftProblems("草稿未通过校验,不能发布", checks.check(draft.files, context)
                                or [Problem(None, why, where) for where, why in exc.problems]) from exc
        exists, owner = self.procedure_owner(draft.code)
        if not exists:
            owner = draft.owner_region_code
        before = self.session.scalar(select(func.count(ProcedureVersion.id)))
        try:
            version = self.definitions.deploy(bundle, actor.username, self.known_roles(), context)
        except ProblemsError as exc:
            raise DraftProblems("草稿未通过校验,不能发布", exc.details) from exc
        if not exists:  # a new procedure belongs to its draft's region
            version.procedure.owner_region_code = owner
        created = self.session.scalar(select(func.count(ProcedureVersion.id))) != before
        draft.status = "deployed"
        draft.deployed_version_id = version.id
        draft.updated_at = self.clock.now()
        self.audit(actor, "studio_deployed", f"{bundle.name}({bundle.code}) v{version.version}",
                   {"draft_id": draft.id, "version_id": version.id, "version": version.version, "created": created,
                    "content_hash": version.content_hash, "owner_region_code": owner}, client_addr=client_addr)
        return version, created
