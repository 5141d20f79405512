"""Who may act where: an actor's role grants and the jurisdiction rule, in one place.

A lane names a role; a role lives at one region level. A task of a case in region R,
in a lane of role X at level L, goes to the users holding X at R's ancestor on level L
(its *scope*). A user sees a case when one of their grants' regions contains the case.

Procedures have an owner region (``Procedure.owner_region_code``): the region of the admin grant
used to create it in the studio, or NULL for the procedures shipped in ``workflows/`` (system-wide).
``procedure_serves`` is the one rule for where its cases may be started; who may change a procedure in
the studio is ``AccessPolicy.may_change_procedure`` (engine/access/policy.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.access.regions import PREFIX_LENGTH, ancestor_at, level_of
from engine.models import RegionLevel, User

# roles that may use the admin pages and the studio: a county admin (``admin``) and a province-level
# system admin (``system_admin``); what each may change follows from their grants' regions
ADMIN_ROLES = frozenset({"admin", "system_admin"})


@dataclass(frozen=True)
class Grant:
    role_code: str
    region_code: str
    level: RegionLevel

    @property
    def prefix(self) -> str:
        return self.region_code[: PREFIX_LENGTH[self.level]]


@dataclass(frozen=True)
class Actor:
    """The user performing an action, with their grants resolved."""

    user_id: int
    username: str
    display_name: str
    grants: tuple[Grant, ...]

    @property
    def scopes(self) -> set[tuple[str, str]]:
        return {(g.role_code, g.region_code) for g in self.grants}

    @property
    def role_codes(self) -> set[str]:
        return {g.role_code for g in self.grants}

    def holds(self, role_code: str, scope_code: str) -> bool:
        return (role_code, scope_code) in self.scopes

    def covers(self, region_code: str) -> bool:
        """True if region_code lies inside the region of any of the actor's grants."""
        return any(region_code.startswith(g.prefix) for g in self.grants)

    def may_start(self, role_code: str, region_code: str, role_level: RegionLevel) -> bool:
        return self.holds(role_code, ancestor_at(region_code, role_level))

    def may_see_full_id(self, region_code: str) -> bool:
        """ID numbers are shown in full only to the household's own village; masked elsewhere."""
        return any(g.level == RegionLevel.village and g.region_code == region_code for g in self.grants)

    @property
    def is_admin(self) -> bool:
        return bool(self.role_codes & ADMIN_ROLES)

    @property
    def admin_grants(self) -> tuple[Grant, ...]:
        return tuple(g for g in self.grants if g.role_code in ADMIN_ROLES)

    def admin_covers(self, region_code: str) -> bool:
        """True if region_code lies inside the region of one of the actor's admin grants."""
        return any(region_code.startswith(g.prefix) for g in self.admin_grants)

    def admin_covers_all(self, root_codes: Iterable[str]) -> bool:
        """True if the actor's admin grants cover every top-level region (the whole region table)."""
        roots = list(root_codes)
        return bool(roots) and all(self.admin_covers(code) for code in roots)

    def may_use_procedure(self, owner_region_code: str | None) -> bool:
        """True if a procedure with this owner serves some region of the actor's grants."""
        if owner_region_code is None:
            return True
        owner = region_prefix(owner_region_code)
        return any(g.prefix.startswith(owner) or owner.startswith(g.prefix) for g in self.grants)


def actor_for(user: User, role_levels: Mapping[str, RegionLevel]) -> Actor:
    """Resolve a user's grants against the role levels."""
    grants = tuple(
        Grant(g.role_code, g.region_code, role_levels[g.role_code]) for g in user.grants
    )
    return Actor(user.id, user.username, user.display_name, grants)


def scope_for(region_code: str, role_level: RegionLevel) -> str:
    """The scope code of a task of a case in region_code for a role at role_level."""
    return ancestor_at(region_code, role_level)


def region_prefix(code: str) -> str:
    """The code prefix shared by every region inside code (``510921`` for 蓬溪县 510921000000)."""
    return code[: PREFIX_LENGTH[level_of(code)]]


def procedure_serves(owner_region_code: str | None, region_code: str) -> bool:
    """True if a case in region_code may run on a procedure owned by owner_region_code (NULL: anywhere)."""
    return owner_region_code is None or region_code.startswith(region_prefix(owner_region_code))
