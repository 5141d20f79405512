"""审批人为空: tasks nobody may take, the admins' list of them, releasing them, and the deploy warning.

A group task goes to the active holders of its lane's role at its scope (engine/access/policy.py). When
there are none the task is 无人办理: the admins of its region were told when it opened
(``NotificationService.task_unstaffed``), it is listed on the admin page ``/admin/unstaffed``, and it is
released the moment someone holds the role there — an admin grants the role (user admin, or 指派 on the
list, which grants the role at the task's scope to a person the case's pickers offer); the new holder is
told of each task released to them. Deploying a version warns of steps that would open with nobody in a
region where the procedure can be started.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from engine.access.assignment import Actor, region_prefix, scope_for
from engine.access.policy import AccessPolicy, Candidate
from engine.core.errors import ForbiddenError, NotFoundError, ValidationError
from engine.models import Case, Procedure, ProcedureVersion, Region, Role, TaskRow, User, UserRole
from engine.procedures.definitions import DefinitionService
from engine.procedures.steps import role_of_lane
from engine.runtime.notify import NotificationService

MAX_LISTED = 200
MAX_NAMED_REGIONS = 5


@dataclass(frozen=True)
class UnstaffedTask:
    row: TaskRow
    role_name: str
    scope_name: str


class StaffingService:
    def __init__(self, session: Session, access: AccessPolicy, notifications: NotificationService,
                 definitions: DefinitionService):
        self.session = session
        self.access = access
        self.notifications = notifications
        self.definitions = definitions

    # ------------------------------------------------------------------ the admins' list
    def unstaffed(self, actor: Actor) -> list[UnstaffedTask]:
        """无人办理 tasks in the actor's admin scope, oldest first.

        :raises ForbiddenError: not an admin.
        """
        if not actor.is_admin:
            raise ForbiddenError("只有管理员可以查看无人办理的任务")
        prefixes = sorted({g.prefix for g in actor.admin_grants})
        rows = self.session.scalars(
            select(TaskRow).where(self.access.unstaffed_clause(),
                                  or_(*[TaskRow.region_code.startswith(p) for p in prefixes]))
            .order_by(TaskRow.created_at, TaskRow.id).limit(MAX_LISTED).options(selectinload(TaskRow.case))).all()
        roles = self._names(Role, {r.role_code for r in rows})
        regions = self._names(Region, {r.scope_code for r in rows})
        return [UnstaffedTask(r, roles.get(r.role_code, r.role_code), regions.get(r.scope_code, r.scope_code))
                for r in rows]

    def _names(self, model, codes: set[str]) -> dict[str, str]:
        if not codes:
            return {}
        return dict(self.session.execute(select(model.code, model.name).where(model.code.in_(sorted(codes)))).tuples().all())

    def unstaffed_task(self, actor: Actor, task_id: int) -> TaskRow:
        """An 无人办理 task inside the actor's admin scope.

        :raises NotFoundError: no such task, not 无人办理 (any more), or outside the scope.
        """
        row = self.session.get(TaskRow, task_id) if 0 < task_id < 2**31 else None
        if row is None or not actor.is_admin or not self.access.admin_covers(actor, row.region_code) \
                or row.id not in self.access.unstaffed_ids([row]):
            raise NotFoundError("该任务不存在或已有人办理")
        return row

    def people_for(self, actor: Actor, row: TaskRow) -> list[Candidate]:
        """Whom the admin may 指派 the task to: the case's pickers (``AccessPolicy.candidates``: active users
        whose jurisdiction contains the case) whose every grant lies in the admin's scope."""
        managed = {u for (u,) in self.session.execute(
            select(User.username).join(UserRole, UserRole.user_id == User.id)
            .where(or_(*[UserRole.region_code.startswith(g.prefix) for g in actor.admin_grants])))}
        return [c for c in self.access.candidates(row.case, actor) if c.username in managed]

    def assignment_grant(self, actor: Actor, task_id: int, username: str) -> tuple[User, list[dict[str, str]]]:
        """What 指派 grants: the user and the grant of the task's role at its scope (the caller grants it
        through ``UserAdminService.grant``, which checks the admin's scope and releases the task).

        :raises NotFoundError: the task is not an 无人办理 one of the actor's.
        :raises ValidationError: the person is not one the picker offers.
        """
        row = self.unstaffed_task(actor, task_id)
        if username not in {c.username for c in self.people_for(actor, row)}:
            raise ValidationError("人员无效", {"username": "只能指派给辖区包含本案件、由您管理的在岗人员"})
        user = self.session.scalar(select(User).where(User.username == username))
        assert user is not None  # offered by the picker: an active user
        return user, [{"role": row.role_code, "region_code": row.scope_code}]

    # ------------------------------------------------------------------ release
    def waiting_for(self, grants: list[tuple[str, str]]) -> list[TaskRow]:
        """The 无人办理 tasks that these (role, scope) grants would release (read before granting)."""
        if not grants:
            return []
        return list(self.session.scalars(select(TaskRow).where(
            self.access.unstaffed_clause(),
            or_(*[(TaskRow.role_code == role) & (TaskRow.scope_code == scope) for role, scope in grants]))
            .options(selectinload(TaskRow.case))))

    def released(self, user: User, rows: list[TaskRow]) -> None:
        """Tell the new holder of each released task that it is now in their 待办."""
        for row in rows:
            self.notifications.notify([user.id], "task", f"新待办:{row.title}(原无人办理)", row.case.title,
                                      case_id=row.case_id, task_id=row.id)

    # ------------------------------------------------------------------ deploy warning
    def deploy_warnings(self, version: ProcedureVersion) -> list[str]:
        """Steps of version that would open with nobody to take them: for each user step's lane role, the
        regions (where some active user may start the procedure) in which no active user holds it.

        Checked against the regions where the start lane's role is held, inside the procedure's owner
        region: a procedure nobody can start anywhere warns once.
        """
        spec, subprocess_specs = self.definitions.specs(version)
        start_role = role_of_lane(spec.start.outputs[0].lane) if spec.start.outputs else None
        start_role = start_role or self.definitions.manifest(version).get("starter_role")
        levels = self.access.role_levels
        if not start_role or start_role not in levels:
            return []
        owner = version.procedure.owner_region_code if version.procedure else self.session.scalar(
            select(Procedure.owner_region_code).where(Procedure.id == version.procedure_id))
        stmt = (select(UserRole.region_code).join(User, User.id == UserRole.user_id)
                .where(User.is_active.is_(True), UserRole.role_code == start_role).distinct())
        if owner:
            stmt = stmt.where(UserRole.region_code.startswith(region_prefix(owner)))
        start_regions = sorted(self.session.scalars(stmt))
        role_names = dict(self.session.execute(select(Role.code, Role.name)).tuples().all())
        if not start_regions:
            return [f"没有在岗人员担任发起岗位「{role_names.get(start_role, start_role)}」,此流程暂时无人能发起"]
        steps: dict[tuple[str, str], str] = {}
        for process in (spec, *subprocess_specs.values()):
            for task_spec in process.task_specs.values():
                role = role_of_lane(getattr(task_spec, "lane", None))
                if getattr(task_spec, "manual", False) and role and role in levels:
                    steps.setdefault((task_spec.bpmn_id, role), task_spec.bpmn_name or task_spec.bpmn_id)
        warnings = []
        for (_step_id, role), step_name in sorted(steps.items(), key=lambda kv: kv[1]):
            scopes = {scope_for(code, levels[role]) for code in start_regions}
            empty = sorted(scopes - self.access.staffed_scopes(role, scopes))
            if not empty:
                continue
            names = self._names(Region, set(empty[:MAX_NAMED_REGIONS]))
            listed = "、".join(names.get(code, code) for code in empty[:MAX_NAMED_REGIONS])
            more = f"等 {len(empty)} 个地区" if len(empty) > MAX_NAMED_REGIONS else ""
            warnings.append(f"步骤「{step_name}」:{listed}{more}没有在岗的「{role_names.get(role, role)}」,"
                            "案件到此步骤将无人办理")
        return warnings

    def start_warnings(self, case_id: int) -> list[str]:
        """What the user who just started a case is told: each open step of it that nobody can take (无人办理;
        the region's admins were notified when it opened)."""
        rows = self.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id, self.access.unstaffed_clause())
                                    .order_by(TaskRow.id))
        return [f"注意:步骤「{row.title}」目前无人办理(该地区没有在岗的办理人员),已通知管理员安排人员" for row in rows]

    def case_unstaffed(self, cases: list[Case]) -> set[int]:
        """Ids of the cases (of a list page) that have an 无人办理 task."""
        ids = [c.id for c in cases]
        if not ids:
            return set()
        return set(self.session.scalars(select(TaskRow.case_id).where(
            TaskRow.case_id.in_(ids), self.access.unstaffed_clause()).distinct()))
