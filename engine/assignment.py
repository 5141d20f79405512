"""Who may act where: an actor's role grants and the jurisdiction rule, in one place.

A lane names a role; a role lives at one region level. A task of a case in region R,
in a lane of role X at level L, goes to the users holding X at R's ancestor on level L
(its *scope*). A user sees a case when one of their grants' regions contains the case.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.models import RegionLevel, User
from engine.regions import PREFIX_LENGTH, ancestor_at


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
        return "admin" in self.role_codes


def actor_for(user: User, role_levels: dict[str, RegionLevel]) -> Actor:
    """Resolve a user's grants against the role levels."""
    grants = tuple(
        Grant(g.role_code, g.region_code, role_levels[g.role_code]) for g in user.grants
    )
    return Actor(user.id, user.username, user.display_name, grants)


def scope_for(region_code: str, role_level: RegionLevel) -> str:
    """The scope code of a task of a case in region_code for a role at role_level."""
    return ancestor_at(region_code, role_level)
