"""Users, roles, regions and subjects: the reference data the runtime works against."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.access.assignment import Actor, actor_for
from engine.core.errors import NotFoundError
from engine.models import Region, RegionLevel, Role, Subject, User, UserRole

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = _HASHER.hash("xiangflow-no-such-user")

ROLES: tuple[tuple[str, str, RegionLevel], ...] = (
    ("applicant", "农户", RegionLevel.village),
    ("village_cadre", "村干部/村级工作专班", RegionLevel.village),
    ("assistance_cadre", "帮扶责任人", RegionLevel.village),
    ("township_officer", "乡镇乡村振兴办", RegionLevel.township),
    ("township_leader", "乡镇分管领导", RegionLevel.township),
    ("office_clerk", "办公室文员", RegionLevel.township),
    ("county_department", "县级行业部门", RegionLevel.county),
    ("county_leader", "县领导小组", RegionLevel.county),
    ("admin", "管理员", RegionLevel.county),
    # a province-level admin; one holding it in every province of the region table is the system admin
    # who may change the shipped procedures (engine/access/policy.py may_change_procedure)
    ("system_admin", "系统管理员", RegionLevel.province),
)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


# role code → level per database. Roles are only ever added (ensure_roles, from ROLES), never changed or
# removed, so a process keeps them and reads them again only when it meets a code it does not know.
_ROLE_LEVELS: dict[str, dict[str, RegionLevel]] = {}


class RoleLevels(Mapping[str, RegionLevel]):
    """The role levels of the session's database, read once per process; an unknown code reads them again."""

    def __init__(self, session: Session):
        self.session = session
        self._key = session.get_bind().engine.url.render_as_string(hide_password=True)

    def _levels(self, reload: bool = False) -> dict[str, RegionLevel]:
        levels = _ROLE_LEVELS.get(self._key)
        if levels is None or reload:
            levels = {r.code: r.level for r in self.session.scalars(select(Role))}
            _ROLE_LEVELS[self._key] = levels
        return levels

    def __getitem__(self, code: str) -> RegionLevel:
        levels = self._levels()
        if code not in levels:
            levels = self._levels(reload=True)
        return levels[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._levels())

    def __len__(self) -> int:
        return len(self._levels())


class DirectoryService:
    def __init__(self, session: Session):
        self.session = session

    def role_levels(self) -> dict[str, RegionLevel]:
        return {r.code: r.level for r in self.session.scalars(select(Role))}

    def authenticate(self, username: str, password: str, refuse_demo: bool = False) -> User | None:
        """The active user with this username and password, or None."""
        user = self.session.scalar(select(User).where(User.username == username))
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or not user.is_active or (refuse_demo and user.is_demo):
            return None
        return user

    def get_user(self, user_id: int) -> User | None:
        return self.session.get(User, user_id)

    def end_sessions(self, user_id: int) -> None:
        """End every login session of the user (logout): sessions carrying the old epoch stop working."""
        self.session.execute(update(User).where(User.id == user_id)
                             .values(session_epoch=User.session_epoch + 1))
        self.session.expire_all()

    def set_password(self, username: str, password: str) -> User:
        """Give the user a new password and end their sessions.

        :raises NotFoundError: no such user.
        """
        user = self._named(username)
        user.password_hash = hash_password(password)
        self.session.flush()
        self.end_sessions(user.id)
        return user

    def set_active(self, username: str, active: bool) -> User:
        """Activate or deactivate the user; deactivating ends their sessions.

        :raises NotFoundError: no such user.
        """
        user = self._named(username)
        user.is_active = active
        self.session.flush()
        self.end_sessions(user.id)
        return user

    def _named(self, username: str) -> User:
        user = self.user_by_username(username)
        if user is None:
            raise NotFoundError("用户不存在")
        return user

    def user_by_username(self, username: str) -> User | None:
        return self.session.scalar(select(User).where(User.username == username))

    def actor(self, user: User) -> Actor:
        return actor_for(user, RoleLevels(self.session))

    def ensure_roles(self) -> None:
        for code, name, level in ROLES:
            if self.session.get(Role, code) is None:
                self.session.add(Role(code=code, name=name, level=level))
        self.session.flush()

    def create_user(self, username: str, display_name: str, password: str | None,
                    grants: list[tuple[str, str]], is_demo: bool = False, password_hash: str | None = None) -> User:
        """Create a user with (role_code, region_code) grants.

        :raises ValueError: a grant's region is not at the role's level.
        """
        levels = self.role_levels()
        if not password_hash:
            if password is None:
                raise ValueError("a password or its hash is required")
            password_hash = hash_password(password)
        user = User(username=username, display_name=display_name,
                    password_hash=password_hash,
                    is_active=True, is_demo=is_demo)
        self.session.add(user)
        self.session.flush()
        for role_code, region_code in grants:
            region = self.session.get(Region, region_code)
            if region is None or region.level != levels[role_code]:
                raise ValueError(f"角色 {role_code} 只能授予 {levels[role_code].value} 级地区")
            self.session.add(UserRole(user_id=user.id, role_code=role_code, region_code=region_code))
        self.session.flush()
        self.session.refresh(user)
        return user

    def region(self, code: str) -> Region:
        region = self.session.get(Region, code)
        if region is None:
            raise NotFoundError("地区不存在")
        return region

    def regions(self, codes: set[str]) -> dict[str, Region]:
        """The regions with these codes, by code (unknown codes are left out)."""
        return {r.code: r for r in self.session.scalars(select(Region).where(Region.code.in_(codes)))}

    def region_path(self, code: str) -> list[Region]:
        """The region and its ancestors, top first."""
        path = []
        region = self.session.get(Region, code)
        while region is not None:
            path.append(region)
            region = self.session.get(Region, region.parent_code) if region.parent_code else None
        return list(reversed(path))

    def subjects_for(self, actor: Actor, kind: str | None = None) -> list[Subject]:
        """Subjects inside the actor's jurisdiction."""
        prefixes = {g.prefix for g in actor.grants}
        if not prefixes:
            return []
        from sqlalchemy import or_

        stmt = select(Subject).where(or_(*[Subject.region_code.startswith(p) for p in prefixes]))
        if kind:
            stmt = stmt.where(Subject.kind == kind)
        return list(self.session.scalars(stmt.order_by(Subject.region_code, Subject.name)))

    def get_subject(self, subject_id: int, actor: Actor) -> Subject:
        subject = self.session.get(Subject, subject_id)
        if subject is None or not actor.covers(subject.region_code):
            raise NotFoundError("对象不存在")
        return subject
