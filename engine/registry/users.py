"""Users, role grants and passwords, administered inside an admin's scope.

A county admin (``admin`` at the county) manages the users whose every grant lies inside the county and
grants roles only at regions inside it; a system admin (``system_admin`` at the provinces) does the same
everywhere. The scope test is the access policy's ``admin_covers``. Every change is audited.
"""

from __future__ import annotations

import builtins  # the class's own list() method shadows the builtin in its annotations
import re
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.access.directory import DirectoryService
from engine.access.policy import AccessPolicy
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import Region, Role, User, UserRole
from engine.models.audit import AuditLog
from engine.registry.catalog import clean_text
from engine.registry.staffing import StaffingService

USERNAME = re.compile(r"[a-z][a-z0-9_.-]{2,63}")
MIN_PASSWORD, MAX_PASSWORD = 10, 128
# refused whatever their length: what people pick first and what this project publishes
COMMON_PASSWORDS = {"password", "password123", "1234567890", "12345678910", "qwertyuiop", "abc1234567",
                    "a123456789", "demo12345", "xiangflow", "admin12345", "11111111111", "woaini1314"}


def password_problem(password: Any, username: str = "") -> str | None:
    """Why password breaks the policy (10–128 characters, letters and digits, not the username, not a
    common password), or None."""
    if not isinstance(password, str) or not password:
        return "请填写密码"
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        return f"密码长度应为 {MIN_PASSWORD} 到 {MAX_PASSWORD} 位"
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        return "密码须同时包含字母和数字"
    if username and username.lower() in password.lower():
        return "密码不能包含用户名"
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        return "密码过于简单"
    return None


class UserAdminService:
    def __init__(self, session: Session, clock, directory: DirectoryService, access: AccessPolicy,
                 staffing: StaffingService):
        self.session = session
        self.clock = clock
        self.directory = directory
        self.access = access
        self.staffing = staffing
        self.audit = AuditLog(session, clock)

    # ------------------------------------------------------------------ scope
    def _require_admin(self, actor: Actor) -> None:
        if not actor.is_admin:
            raise ForbiddenError("只有管理员可以管理用户")

    def manages(self, actor: Actor, user: User) -> bool:
        """True if every grant of user lies inside actor's admin scope (a user without grants: any admin)."""
        return actor.is_admin and all(self.access.admin_covers(actor, g.region_code) for g in user.grants)

    def get(self, actor: Actor, user_id: int) -> User:
        """:raises NotFoundError: no such user, or outside the actor's admin scope."""
        self._require_admin(actor)
        user = self.session.get(User, user_id) if 0 < user_id < 2**31 else None
        if user is None or not self.manages(actor, user):
            raise NotFoundError("用户不存在")
        return user

    def list(self, actor: Actor, name: str | None = None, limit: int = 200) -> list[User]:
        """The users the actor manages with a grant inside their scope (username or display name contains name)."""
        self._require_admin(actor)
        prefixes = sorted({g.prefix for g in actor.admin_grants})
        stmt = (select(User).join(UserRole, UserRole.user_id == User.id)
                .where(or_(*[UserRole.region_code.startswith(p) for p in prefixes])).distinct())
        if name:
            stmt = stmt.where(or_(User.username.contains(name, autoescape=True),
                                  User.display_name.contains(name, autoescape=True)))
        users = self.session.scalars(stmt.order_by(User.username).limit(limit * 2)).unique().all()
        return [u for u in users if self.manages(actor, u)][:limit]

    def roles(self) -> builtins.list[Role]:
        return list(self.session.scalars(select(Role).order_by(Role.code)))

    # ------------------------------------------------------------------ changes
    def _grants(self, actor: Actor, grants: Any) -> builtins.list[tuple[str, str]]:
        if not isinstance(grants, list) or not grants or len(grants) > 50:
            raise ValidationError("grants 应为 1 到 50 个授权", {"grants": "至少授予一个角色"})
        levels = self.directory.role_levels()
        out, errors = [], {}
        for i, grant in enumerate(grants):
            key = f"grants[{i}]"
            if not isinstance(grant, dict) or not isinstance(grant.get("role"), str) \
                    or not isinstance(grant.get("region_code"), str):
                errors[key] = "授权应为 {\"role\", \"region_code\"}"
                continue
            role, region_code = grant["role"], grant["region_code"].strip()
            region = self.session.get(Region, region_code) if re.fullmatch(r"\d{12}", region_code) else None
            if role not in levels:
                errors[f"{key}.role"] = "角色不存在"
            elif region is None:
                errors[f"{key}.region_code"] = "区划代码不存在"
            elif region.level != levels[role]:
                errors[f"{key}.region_code"] = f"该角色只能授予{_LEVEL_NAMES[levels[role].value]}级地区"
            elif not self.access.admin_covers(actor, region_code):
                raise ForbiddenError(f"{region.name}不在您的管理范围内,不能在那里授权")
            else:
                out.append((role, region_code))
        if errors:
            raise ValidationError("授权有误:" + ";".join(errors.values()), errors)
        return list(dict.fromkeys(out))

    def create(self, actor: Actor, payload: dict[str, Any], client_addr: str | None = None) -> User:
        """Create a user with role grants inside the actor's admin scope.

        :raises ForbiddenError: not an admin, or a grant outside their scope.
        :raises ValidationError: username, display name, password policy or a grant is invalid.
        :raises ConflictError: the username is taken.
        """
        self._require_admin(actor)
        errors: dict[str, str] = {}
        username = payload.get("username")
        if not isinstance(username, str) or not USERNAME.fullmatch(username):
            errors["username"] = "用户名应为 3 到 64 位小写字母、数字、下划线、点或连字符,以字母开头"
            username = ""
        display = clean_text(payload.get("display_name"), "display_name", errors, "姓名", 80, required=True)
        problem = password_problem(payload.get("password"), username)
        if problem:
            errors["password"] = problem
        if errors:
            raise ValidationError("用户信息有误:" + ";".join(errors.values()), errors)
        assert display is not None  # required=True: a missing name raised above
        grants = self._grants(actor, payload.get("grants"))
        if self.session.scalar(select(func.count(User.id)).where(User.username == username)):
            raise ConflictError(f"用户名 {username} 已被使用")
        waiting = self.staffing.waiting_for(grants)  # 无人办理 tasks the new user's grants release
        user = self.directory.create_user(username, display, payload["password"], grants)
        self.staffing.released(user, waiting)
        self.audit.record("user_create", user_id=actor.user_id, step=f"新建用户 {username}",
                          detail={"target": username, "grants": [list(g) for g in grants]}, client_addr=client_addr)
        return user

    def update(self, actor: Actor, user_id: int, payload: dict[str, Any], client_addr: str | None = None) -> User:
        """Change display name, reset the password, deactivate or reactivate a managed user.

        :raises NotFoundError: outside the actor's scope. :raises ForbiddenError: deactivating oneself.
        :raises ValidationError: a value is invalid.
        """
        user = self.get(actor, user_id)
        unknown = sorted(set(payload) - {"display_name", "password", "is_active"})
        if unknown:
            raise ValidationError("有不能修改的字段", {k: "不能修改此字段" for k in unknown})
        errors: dict[str, str] = {}
        changed = []
        if "display_name" in payload:
            display = clean_text(payload["display_name"], "display_name", errors, "姓名", 80, required=True)
            if display and display != user.display_name:
                user.display_name = display
                changed.append("display_name")
        if "password" in payload:
            problem = password_problem(payload["password"], user.username)
            if problem:
                errors["password"] = problem
            else:
                self.directory.set_password(user.username, payload["password"])  # ends their sessions too
                changed.append("password")
        if "is_active" in payload:
            if not isinstance(payload["is_active"], bool):
                errors["is_active"] = "is_active 应为 true 或 false"
            elif payload["is_active"] != user.is_active:
                if user.id == actor.user_id:
                    raise ForbiddenError("不能停用自己的账号")
                waiting = self.staffing.waiting_for([(g.role_code, g.region_code) for g in user.grants]) \
                    if payload["is_active"] else []  # reactivated: 无人办理 tasks of their grants are released
                self.directory.set_active(user.username, payload["is_active"])  # deactivating ends sessions
                self.staffing.released(user, waiting)
                changed.append("is_active")
        if errors:
            raise ValidationError("用户信息有误:" + ";".join(errors.values()), errors)
        if changed:
            action = "user_update"
            if changed == ["password"]:
                action = "user_password_reset"
            elif changed == ["is_active"]:
                action = "user_reactivate" if user.is_active else "user_deactivate"
            self.audit.record(action, user_id=actor.user_id, step=f"修改用户 {user.username}",
                              detail={"target": user.username, "fields": changed}, client_addr=client_addr)
        return user

    def grant(self, actor: Actor, user_id: int, grants: Any, client_addr: str | None = None) -> builtins.list[UserRole]:
        """Add role grants (inside the actor's scope) to a managed user; grants held already are kept once.
        无人办理 tasks of a granted role at its region are released to the user (now in their 待办; told)."""
        user = self.get(actor, user_id)
        held = {(g.role_code, g.region_code) for g in user.grants}
        new = [g for g in self._grants(actor, grants) if g not in held]
        waiting = self.staffing.waiting_for(new) if user.is_active else []  # 无人办理 tasks these release
        added = []
        for role, region_code in new:
            row = UserRole(user_id=user.id, role_code=role, region_code=region_code)
            self.session.add(row)
            added.append(row)
        self.session.flush()
        self.staffing.released(user, waiting)
        if added:
            self.audit.record("user_grant", user_id=actor.user_id, step=f"授权 {user.username}",
                              detail={"target": user.username, "grants": [[g.role_code, g.region_code] for g in added]},
                              client_addr=client_addr)
        self.session.refresh(user)
        return added

    def revoke(self, actor: Actor, user_id: int, grant_id: int, client_addr: str | None = None) -> None:
        """Remove one grant of a managed user.

        :raises NotFoundError: no such grant on that user. :raises ForbiddenError: one's own last admin grant.
        """
        user = self.get(actor, user_id)
        grant = next((g for g in user.grants if g.id == grant_id), None)
        if grant is None:
            raise NotFoundError("授权不存在")
        if user.id == actor.user_id and grant.role_code in ("admin", "system_admin") \
                and sum(g.role_code in ("admin", "system_admin") for g in user.grants) == 1:
            raise ForbiddenError("不能撤销自己唯一的管理员授权")
        self.session.delete(grant)
        self.session.flush()
        self.audit.record("user_revoke", user_id=actor.user_id, step=f"撤销授权 {user.username}",
                          detail={"target": user.username, "grant": [grant.role_code, grant.region_code]},
                          client_addr=client_addr)
        self.session.refresh(user)


_LEVEL_NAMES = {"province": "省", "city": "市", "county": "县", "township": "乡镇", "village": "村"}
