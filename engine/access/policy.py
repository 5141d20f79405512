"""The one access policy: who may see a case, see a task, act on it, attach to it, and whom one may choose.

Every service and view asks this module; nothing else restates these rules.

- **see a case**: its starter, anyone whose jurisdiction contains the case's region, and whoever a task of
  the case is assigned to or owned by (委派/加签: the permission follows the task). A 抄送 (CC) adds no right
  of its own: recipients are chosen inside the case's jurisdiction (``recipient``), so a CC reader reads what
  any reader in the jurisdiction may, and a CC row to someone outside it (made before this rule) opens nothing.
- **take part** (抄送 further, 催办): the starter and anyone whose jurisdiction contains the case.
- **a task of one's own** (``task_of``): a holder of its role at its scope, or its assignee, owner or completer;
  everyone else gets "not found", even inside the jurisdiction.
- **act on a task** (``check_may_complete``, ``task_operations``, ``acts_on``): see their docstrings.
- **choose a person** (抄送/委派/加签 ``recipient``; 转办 ``transfer_recipient``): active, not oneself, and the
  case lies inside their jurisdiction; for 转办 they also hold the task's role at the task's scope.
- **register a subject** (household, project): ``may_register``.
- **审批人为空**: ``unstaffed_clause`` (a task nobody active holds), ``region_admin_ids`` (whom to tell).
- **admin scope**: ``admin_covers`` and ``may_change_procedure`` (studio), ``procedure_serves``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from engine.access.assignment import ADMIN_ROLES, Actor, actor_for, scope_for
from engine.access.directory import RoleLevels
from engine.access.regions import ancestor_at
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import Case, CaseStatus, Region, RegionLevel, Role, TaskRow, TaskStatus, User, UserRole

READ_ONLY = "抄送给您的案件只能查看,不能办理、抄送或催办"
# who may register and edit households and projects (at a region containing theirs); applicants and
# 帮扶责任人 read the registry of their village but do not change it
REGISTRAR_ROLES = frozenset({"village_cadre", "township_officer", "county_department", "admin", "system_admin"})


@dataclass(frozen=True)
class Candidate:
    """A person a picker offers: the username the form sends, and the words it shows."""

    username: str
    display_name: str
    role_name: str
    region_name: str
    rank: int  # 0 = the case's own level (village), upwards

    @property
    def label(self) -> str:
        return f"{self.display_name} · {self.role_name} · {self.region_name}"


class AccessPolicy:
    """The access rules, bound to one session (for the few rules that read rows: task assignment, users)."""

    def __init__(self, session: Session):
        self.session = session

    @property
    def role_levels(self) -> Mapping[str, RegionLevel]:
        return RoleLevels(self.session)

    # ------------------------------------------------------------------ cases
    @staticmethod
    def takes_part(case: Case, actor: Actor) -> bool:
        """The starter and anyone whose jurisdiction contains the case: they may read, 抄送 and 催办."""
        return case.started_by_id == actor.user_id or actor.covers(case.region_code)

    def may_view_case(self, case: Case, actor: Actor) -> bool:
        """Whether actor may read the case: ``takes_part``, or a task of the case is assigned to or owned by them."""
        if self.takes_part(case, actor):
            return True
        return self.session.scalar(select(TaskRow.id).where(  # 委派/加签: the permission follows the task
            TaskRow.case_id == case.id, (TaskRow.assignee_id == actor.user_id) | (TaskRow.owner_id == actor.user_id))
            .limit(1)) is not None

    def visible_case(self, case_id: int, actor: Actor) -> Case:
        """A case the actor may see.

        :raises NotFoundError: no such case, or the actor may not see it.
        """
        case = self.session.get(Case, case_id)
        if case is None or not self.may_view_case(case, actor):
            raise NotFoundError("案件不存在")
        return case

    @staticmethod
    def jurisdiction_clause(actor: Actor):
        """SQL condition on ``Case``: the case lies inside the actor's jurisdiction (for list queries)."""
        prefixes = sorted({g.prefix for g in actor.grants})
        if not prefixes:
            return false()
        return or_(*[Case.region_code.startswith(p) for p in prefixes])

    def check_takes_part(self, case: Case, actor: Actor) -> None:
        """:raises ForbiddenError: the actor may read the case but not 抄送 or 催办 on it."""
        if not self.takes_part(case, actor):
            raise ForbiddenError(READ_ONLY)

    @staticmethod
    def may_attach_to_case(case: Case, actor: Actor) -> bool:
        """Whether actor may add a case-level attachment (no task): the starter, while the case runs."""
        return case.started_by_id == actor.user_id and case.status == CaseStatus.running and case.finished_at is None

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def owns_task(row: TaskRow, actor: Actor) -> bool:
        """A holder of the task's role at its scope, or its assignee, owner (委派/加签) or completer."""
        return actor.holds(row.role_code, row.scope_code) or actor.user_id in (
            row.completed_by_id, row.assignee_id, row.owner_id)

    def task_of(self, task_id: int, actor: Actor) -> TaskRow:
        """A task row that is the actor's (``owns_task``), for the task page and every action on it.

        :raises NotFoundError: no such task, or not the actor's.
        """
        row = self.session.get(TaskRow, task_id)
        if row is None or not self.owns_task(row, actor):
            raise NotFoundError("任务不存在")
        return row

    def task_in_visible_case(self, task_id: int, actor: Actor) -> TaskRow:
        """A task of a case the actor may see (for read-only views and 催办).

        :raises NotFoundError: no such task, or its case is outside the actor's view.
        """
        row = self.session.get(TaskRow, task_id)
        if row is None or not self.may_view_case(row.case, actor):
            raise NotFoundError("任务不存在")
        return row

    @staticmethod
    def is_own_todo(row: TaskRow, actor: Actor) -> bool:
        """The open task is in the actor's 待办: assigned to them, or unassigned and of a role they hold there."""
        return row.assignee_id == actor.user_id or (
            row.assignee_id is None and actor.holds(row.role_code, row.scope_code))

    def may_urge(self, row: TaskRow, actor: Actor) -> bool:
        """催办 is offered and allowed: an open task of a case actor takes part in, not in actor's own 待办."""
        return row.status == TaskStatus.open and self.takes_part(row.case, actor) and not self.is_own_todo(row, actor)

    @staticmethod
    def check_may_complete(row: TaskRow, actor: Actor, action: str) -> None:
        """Check that actor may approve, reject or return this task row now (one rule for engine and pages).

        A group task: a holder of its role at its scope, unless someone else claimed it. A 加签
        co-signer's row: only that co-signer. A delegated (委派) task not yet handed back: nobody (the
        delegate may only resolve it). A task waiting on its co-signers: only its holder, to reject or return.

        :raises ConflictError: the task is done, or waits on its co-signers.
        :raises ForbiddenError: the actor may see the task but not act on it.
        """
        mine = row.assignee_id == actor.user_id
        if row.status == TaskStatus.waiting:
            if not mine:
                raise ForbiddenError("您无权处理此任务")
            if action not in ("reject", "return"):
                raise ConflictError("该任务正在等待加签人处理,只能退回或不通过")
            return
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if row.delegation == "pending":
            raise ForbiddenError("委派给您的任务只能“处理完成并交还”" if mine else "任务已委派,等待被委派人处理后交还")
        if row.parent_task_id is not None:
            if not mine:
                raise ForbiddenError("您无权处理此任务")
            return
        if not actor.holds(row.role_code, row.scope_code):
            raise ForbiddenError("您无权处理此任务")
        if row.assignee_id not in (None, actor.user_id):
            raise ForbiddenError("该任务已由他人认领或转办给他人")

    def allowed_actions(self, row: TaskRow, actor: Actor) -> list[str]:
        """The step's actions (approve, reject, return) that actor may take on this row now."""
        allowed = []
        for action in row.actions.split(","):
            try:
                self.check_may_complete(row, actor, action)
            except (ConflictError, ForbiddenError):
                continue
            allowed.append(action)
        return allowed

    @staticmethod
    def check_holder(row: TaskRow, actor: Actor) -> None:
        """Check that row is an open group task actor holds (not a 委派 or 加签 one): who may claim or 转办.

        :raises ConflictError: the task is done.
        :raises ForbiddenError: not a holder, or the task is delegated or a co-signer's.
        """
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if not actor.holds(row.role_code, row.scope_code):
            raise ForbiddenError("您无权处理此任务")
        if row.parent_task_id is not None or row.delegation == "pending":
            raise ForbiddenError("委派或加签中的任务不能认领或转办")

    def holder_operations(self, row: TaskRow, actor: Actor) -> set[str]:
        """What actor may do with a group task besides acting on it: claim (unclaimed), unclaim (claimed by
        actor), transfer (unclaimed or claimed by actor)."""
        try:
            self.check_holder(row, actor)
        except (ConflictError, ForbiddenError):
            return set()
        if row.assignee_id is None:
            return {"claim", "transfer"}
        return {"unclaim", "transfer"} if row.assignee_id == actor.user_id else set()

    def task_operations(self, row: TaskRow, actor: Actor) -> set[str]:
        """What actor may do to this task besides approve/reject/return: delegate, add_sign, resolve."""
        if row.status == TaskStatus.open and row.delegation == "pending" and row.assignee_id == actor.user_id:
            return {"resolve"}
        try:
            self.check_may_complete(row, actor, "approve")
        except (ConflictError, ForbiddenError):
            return set()
        return set() if row.parent_task_id is not None else {"delegate", "add_sign"}

    def acts_on(self, row: TaskRow, actor: Actor) -> bool:
        """Whether the task is open and actor's to act on now (approve, reject, return; or resolve, delegate,
        add co-signers): the one rule for attaching files to it and for the case page's own tasks."""
        return row.status == TaskStatus.open and bool(
            self.allowed_actions(row, actor) or self.task_operations(row, actor))

    @staticmethod
    def may_sign(row: TaskRow, actor: Actor) -> bool:
        """Whether actor may put a handwritten signature on the open group task: a holder it is not claimed from."""
        return actor.holds(row.role_code, row.scope_code) and row.assignee_id in (None, actor.user_id)

    # ------------------------------------------------------------------ whom one may choose
    def recipient(self, username: str, case: Case, actor: Actor, field: str) -> User:
        """A person actor may 抄送, 委派 or 加签 to on case: active, not the actor, the case inside their jurisdiction.

        :raises ValidationError: (field → a message naming who may be chosen) unknown, inactive, oneself,
            or the case outside their jurisdiction.
        """
        user = self.session.scalar(select(User).where(User.username == username, User.is_active.is_(True)))
        if user is None:
            raise ValidationError("人员无效", {field: f"用户不存在或已停用:{username or '未填写'}"})
        if user.id == actor.user_id:
            raise ValidationError("人员无效", {field: "不能选择自己"})
        if not actor_for(user, self.role_levels).covers(case.region_code):
            raise ValidationError("人员无效", {field: f"{user.display_name}的辖区不包含本案件;"
                                                       f"只能选择辖区包含{self._region_name(case.region_code)}的人员"})
        return user

    def transfer_recipient(self, username: str, row: TaskRow, actor: Actor, field: str) -> User:
        """A person actor may 转办 the task to: active, not the actor, holding the task's role at its scope.

        :raises ValidationError: field → a message naming who may be chosen.
        """
        user = self.session.scalar(select(User).where(User.username == username, User.is_active.is_(True)))
        if user is None or self.session.scalar(select(UserRole.id).where(
                UserRole.user_id == user.id, UserRole.role_code == row.role_code,
                UserRole.region_code == row.scope_code).limit(1)) is None:
            raise ValidationError("无法转办", {field: "只能转办给本辖区同一岗位的人员"})
        if user.id == actor.user_id:
            raise ValidationError("无法转办", {field: "不能转办给自己"})
        return user

    def candidates(self, case: Case, actor: Actor, row: TaskRow | None = None) -> list[Candidate]:
        """Whom actor may choose, for the pickers: with ``row``, the 转办 rule (``transfer_recipient``: active
        holders of the task's role at its scope); without, the 抄送/委派/加签 rule (``recipient``: active users
        whose jurisdiction contains the case — a grant at the case's own region or one of its ancestors at the
        grant role's level). Never the actor. Sorted from the case's own level upwards, then by name."""
        stmt = (select(User, Role, Region).join(UserRole, UserRole.user_id == User.id)
                .join(Role, Role.code == UserRole.role_code).join(Region, Region.code == UserRole.region_code)
                .where(User.is_active.is_(True), User.id != actor.user_id))
        if row is not None:
            stmt = stmt.where(_holds(row.role_code, row.scope_code))
        else:
            stmt = stmt.where(or_(*[and_(Role.level == level, UserRole.region_code == ancestor_at(case.region_code, level))
                                    for level in RegionLevel]))
        order = {level: i for i, level in enumerate(reversed(list(RegionLevel)))}
        found: dict[str, Candidate] = {}
        for user, role, region in self.session.execute(stmt):
            item = found.get(user.username)
            if item is None or order[role.level] < item.rank:
                found[user.username] = Candidate(user.username, user.display_name, role.name, region.name,
                                                 order[role.level])
        return sorted(found.values(), key=lambda c: (c.rank, c.display_name, c.username))

    # ------------------------------------------------------------------ 审批人为空 (a task nobody may take)
    @staticmethod
    def unstaffed_clause():
        """SQL condition on ``TaskRow``: an open group task (unassigned, not a 加签 co-signer's) whose role
        no active user holds at its scope — 无人办理: nobody can see it in a 待办 or claim it."""
        holder = (select(UserRole.id).join(User, User.id == UserRole.user_id)
                  .where(User.is_active.is_(True), UserRole.role_code == TaskRow.role_code,
                         UserRole.region_code == TaskRow.scope_code).exists())
        return and_(TaskRow.status == TaskStatus.open, TaskRow.assignee_id.is_(None),
                    TaskRow.parent_task_id.is_(None), ~holder)

    def unstaffed_ids(self, rows: Iterable[TaskRow]) -> set[int]:
        """Which of these task rows are 无人办理 (``unstaffed_clause``), in one query."""
        ids = [r.id for r in rows if r.status == TaskStatus.open and r.assignee_id is None]
        if not ids:
            return set()
        return set(self.session.scalars(select(TaskRow.id).where(TaskRow.id.in_(ids), self.unstaffed_clause())))

    def staffed_scopes(self, role_code: str, scope_codes: Iterable[str]) -> set[str]:
        """Of scope_codes, those where some active user holds role_code (deploy warnings: the rest have nobody)."""
        codes = sorted(set(scope_codes))
        if not codes:
            return set()
        return set(self.session.scalars(
            select(UserRole.region_code).join(User, User.id == UserRole.user_id)
            .where(User.is_active.is_(True), UserRole.role_code == role_code, UserRole.region_code.in_(codes))))

    def region_admin_clause(self, region_code: str):
        """SQL condition on ``UserRole``: an admin grant whose region contains region_code (the county's
        admin, and the system admin at the province above), the admins told of a 无人办理 task there."""
        levels = self.role_levels
        return or_(*[and_(UserRole.role_code == role, UserRole.region_code == ancestor_at(region_code, levels[role]))
                     for role in sorted(ADMIN_ROLES) if role in levels])

    def region_admin_ids(self, region_code: str) -> list[int]:
        """Ids of the active admins whose admin grant contains region_code (``region_admin_clause``)."""
        return list(self.session.scalars(select(UserRole.user_id).join(User, User.id == UserRole.user_id)
                                         .where(User.is_active.is_(True), self.region_admin_clause(region_code))
                                         .distinct()))

    def _region_name(self, code: str) -> str:
        region = self.session.get(Region, code)
        return f"“{region.name}”" if region is not None else "本案件所在地"

    # ------------------------------------------------------------------ the registry
    @staticmethod
    def may_register(actor: Actor, region_code: str) -> bool:
        """Whether actor may register or edit a subject (household, project) in region_code: a registrar
        role (``REGISTRAR_ROLES``) held at a region containing it."""
        return any(g.role_code in REGISTRAR_ROLES and region_code.startswith(g.prefix) for g in actor.grants)

    @staticmethod
    def registrar_prefixes(actor: Actor) -> list[str]:
        """The code prefixes of the regions where actor may register (``may_register``), for list queries."""
        return sorted({g.prefix for g in actor.grants if g.role_code in REGISTRAR_ROLES})

    @classmethod
    def may_register_somewhere(cls, actor: Actor) -> bool:
        return bool(cls.registrar_prefixes(actor))

    # ------------------------------------------------------------------ admin scope
    @staticmethod
    def admin_covers(actor: Actor, region_code: str) -> bool:
        """Whether region_code lies inside one of the actor's admin grants (admin pages, timer incidents)."""
        return actor.admin_covers(region_code)

    @staticmethod
    def may_change_procedure(actor: Actor, owner_region_code: str | None, root_codes: Iterable[str]) -> bool:
        """Whether actor may change (save, deploy, migrate, export, retire) a procedure with this owner.

        A region-owned procedure: an admin one of whose admin grants contains the owner region (a county
        admin changes their county's procedures, a province admin those of the counties in the province).
        A shipped, system-wide procedure (owner NULL): only an admin whose grants cover every top-level
        region (``root_codes``, the provinces of the region table) — a county admin adapts it by copying it
        under a new code owned by their county.
        """
        if not actor.is_admin:
            return False
        if owner_region_code is None:
            return actor.admin_covers_all(root_codes)
        return actor.admin_covers(owner_region_code)

    def may_raise_event(self, role_code: str | None, case: Case, actor: Actor) -> bool:
        """Whether actor may raise a waiting event (公示异议) of a lane's role: they hold it at the case's scope."""
        level = self.role_levels.get(role_code) if role_code else None
        return role_code is not None and level is not None and actor.holds(role_code, scope_for(case.region_code, level))


def _holds(role_code: str, scope_code: str):
    """SQL condition on ``UserRole`` joined to ``User``: an active user's grant of role_code at scope_code."""
    return and_(User.is_active.is_(True), UserRole.role_code == role_code, UserRole.region_code == scope_code)
