"""The subject registry (一户一档 and 项目库 records): register, edit with history, search, deactivate.

Region-scoped like everything else: a user sees the subjects inside their grants' regions
(``Actor.covers``); registering or editing is the access policy's ``may_register`` (a registrar role held at
a region containing the subject), so a village cadre works inside the village and a township officer inside the township.
The field rules live in ``engine/registry/catalog.py``; the rules that need the database (region, level,
duplicates, the 帮扶责任人) live here, used by the API, the pages and the Excel import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.access.assignment import Actor, region_prefix
from engine.access.policy import AccessPolicy
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import Region, RegionLevel, Subject, User, UserRole
from engine.models.audit import AuditLog
from engine.models.registry import SubjectMember, SubjectRevision
from engine.queries.names import name_contains
from engine.queries.paging import COUNT_CAP, Keyset, Page, beyond, read_page
from engine.registry import catalog

# where a subject of each kind may be registered: households live in a village; a project is a village's
# or a township's
KIND_LEVELS = {"household": (RegionLevel.village,), "project": (RegionLevel.village, RegionLevel.township)}
PER_PAGE = 50
MAX_PER_PAGE = 200
KEY_KINDS = ("str", "str", "int")  # the list's sort key (region code, name, id) as its cursor carries it


class DuplicateSubjectError(ConflictError):
    """The ID number (or the project's name in its region) is registered already; names that record."""

    def __init__(self, message: str, field: str, existing: Subject):
        super().__init__(message)
        self.errors = {field: message}
        self.existing_id = existing.id


@dataclass
class SubjectSearch:
    kind: str | None = None
    name: str | None = None
    id_number: str | None = None
    region_code: str | None = None
    category: str | None = None
    active: str = "1"  # "1" active only, "0" deactivated only, "all"
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, args: Any) -> SubjectSearch:
        """Read the search from request arguments.

        :raises ValidationError: a filter has an impossible value.
        """
        errors: dict[str, str] = {}
        kind = (args.get("kind") or "").strip() or None
        if kind is not None and kind not in catalog.KINDS:
            errors["kind"] = "kind 只能是 household 或 project"
        name = catalog.clean_text(args.get("name"), "name", errors, "名称", 60)
        id_number = catalog.normalize_id_number(args.get("id_number")) or None
        if id_number is not None and len(id_number) > 18:
            errors["id_number"] = "身份证号至多 18 位"
        region = (args.get("region") or args.get("region_code") or "").strip() or None
        if region is not None and not (region.isdigit() and len(region) == 12):
            errors["region"] = "区划代码应为 12 位数字"
        category = catalog.clean_text(args.get("category"), "category", errors, "类别", 40)
        active = (args.get("active") or "1").strip()
        if active not in ("1", "0", "all"):
            errors["active"] = "active 只能是 1、0 或 all"
        raw = str(args.get("per_page") or PER_PAGE).strip()
        per_page = int(raw) if raw.isdigit() and len(raw) <= 4 else 0
        if not 1 <= per_page <= MAX_PER_PAGE:
            errors["per_page"] = f"per_page 应为 1 到 {MAX_PER_PAGE} 之间的整数"
        if errors:
            raise ValidationError("查询条件无效", errors)
        return cls(kind, name, id_number, region, category, active, per_page)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in {"kind": self.kind, "name": self.name, "id_number": self.id_number,
                                  "region": self.region_code, "category": self.category,
                                  "active": self.active}.items() if v}


class RegistryService:
    def __init__(self, session: Session, clock):
        self.session = session
        self.clock = clock
        self.audit = AuditLog(session, clock)

    # ------------------------------------------------------------------ reading
    def get(self, subject_id: int, actor: Actor) -> Subject:
        """The subject if actor's jurisdiction contains it.

        :raises NotFoundError: no such subject, or outside the actor's jurisdiction.
        """
        subject = self.session.get(Subject, subject_id) if 0 < subject_id < 2**31 else None
        if subject is None or not actor.covers(subject.region_code):
            raise NotFoundError("对象不存在")
        return subject

    def members(self, subject_id: int) -> list[SubjectMember]:
        return list(self.session.scalars(select(SubjectMember).where(SubjectMember.subject_id == subject_id)
                                         .order_by(SubjectMember.position)))

    def members_of(self, subject_ids: list[int]) -> dict[int, list[SubjectMember]]:
        out: dict[int, list[SubjectMember]] = {i: [] for i in subject_ids}
        for chunk in range(0, len(subject_ids), 500):
            stmt = select(SubjectMember).where(SubjectMember.subject_id.in_(subject_ids[chunk:chunk + 500]))
            for m in self.session.scalars(stmt.order_by(SubjectMember.subject_id, SubjectMember.position)):
                out[m.subject_id].append(m)
        return out

    def history(self, subject_id: int) -> list[SubjectRevision]:
        return list(self.session.scalars(select(SubjectRevision).where(SubjectRevision.subject_id == subject_id)
                                         .order_by(SubjectRevision.revision)))

    def search(self, actor: Actor, search: SubjectSearch, after: Keyset | None = None,
               count: bool = True) -> Page[Subject]:
        """One page of the subjects inside actor's jurisdiction matching search, in (region, name, id) order
        from the keyset after on, and (with count) how many match, counted up to ``COUNT_CAP`` + 1.

        :raises ValidationError: region → a message, for a region outside the actor's jurisdiction (the
            list would silently be empty; 批量发起 and the inbox refuse such a region the same way).
        """
        if search.region_code and not actor.covers(search.region_code):
            raise ValidationError("查询条件无效", {"region": "只能选择本辖区内的地区"})
        prefixes = sorted({g.prefix for g in actor.grants})
        if not prefixes:
            return Page([], total=0)
        stmt = select(Subject).where(or_(*[Subject.region_code.startswith(p) for p in prefixes]))
        if search.kind:
            stmt = stmt.where(Subject.kind == search.kind)
        if search.name:
            stmt = stmt.where(name_contains(Subject, search.name, self.session.get_bind().dialect.name))
        if search.id_number:
            member = exists().where(SubjectMember.subject_id == Subject.id,
                                    SubjectMember.id_number == search.id_number)
            stmt = stmt.where(or_(Subject.id_number == search.id_number, member))
        if search.region_code:
            stmt = stmt.where(Subject.region_code.startswith(region_prefix(search.region_code)))
        if search.category:
            stmt = stmt.where(or_(Subject.attrs["category"].as_string() == search.category,
                                  Subject.attrs["project_type"].as_string() == search.category))
        if search.active != "all":
            stmt = stmt.where(Subject.is_active.is_(search.active == "1"))
        total = None
        if count:
            total = self.session.scalar(select(func.count()).select_from(
                stmt.with_only_columns(Subject.id).limit(COUNT_CAP + 1).subquery())) or 0
        keys = (Subject.region_code, Subject.name, Subject.id)
        backward = after is not None and after.backward
        if after is not None:
            stmt = stmt.where(beyond(keys, after.key, False, backward))
        stmt = stmt.add_columns(*keys).order_by(*[k.desc() if backward else k.asc() for k in keys])
        rows = [(r[0], tuple(r[1:])) for r in self.session.execute(stmt.limit(search.per_page + 1))]
        page = read_page(rows, search.per_page, after)
        if page is None:  # went back past the start: the first page
            return self.search(actor, search, None, count)
        page.total = total
        return page

    def cadres_by_region(self, region_codes: set[str]) -> dict[str, set[str]]:
        """Region code → usernames of the active 帮扶责任人 there, for many regions in one query."""
        out: dict[str, set[str]] = {}
        rows = self.session.execute(
            select(UserRole.region_code, User.username).join(User, UserRole.user_id == User.id)
            .where(UserRole.role_code == "assistance_cadre", UserRole.region_code.in_(region_codes),
                   User.is_active.is_(True)))
        for code, username in rows:
            out.setdefault(code, set()).add(username)
        return out

    def assistance_cadres(self, region_code: str) -> list[User]:
        """The active users who may be a household's 帮扶责任人 there (role assistance_cadre at its village)."""
        return list(self.session.scalars(
            select(User).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role_code == "assistance_cadre", UserRole.region_code == region_code,
                   User.is_active.is_(True)).order_by(User.display_name).distinct()))

    def registrable_regions(self, actor: Actor, kind: str) -> list[Region]:
        """The regions where actor may register a subject of kind (villages, or villages and townships)."""
        prefixes = AccessPolicy.registrar_prefixes(actor)
        if not prefixes or kind not in KIND_LEVELS:
            return []
        return list(self.session.scalars(
            select(Region).where(Region.level.in_(KIND_LEVELS[kind]),
                                 or_(*[Region.code.startswith(p) for p in prefixes])).order_by(Region.code)))

    def fields_of(self, subject: Subject) -> dict[str, Any]:
        """The subject as the registry's fields (what a revision compares)."""
        return {"kind": subject.kind, "region_code": subject.region_code, "name": subject.name,
                "id_number": subject.id_number, "attrs": dict(subject.attrs or {}),
                "members": [{k: getattr(m, k) for k in catalog.MEMBER_FIELDS} for m in self.members(subject.id)]}

    # ------------------------------------------------------------------ checking
    def check(self, actor: Actor, fields: dict[str, Any], regions: dict[str, Region] | None = None,
              cadres: dict[str, set[str]] | None = None) -> catalog.Checked:
        """Every check of a subject's fields but the duplicates: the catalog's, the region (exists, its
        level fits the kind, inside the actor's registrar grants) and the 帮扶责任人. ``regions`` and
        ``cadres`` (region code → usernames) are preloaded lookups for checking many rows at once."""
        checked = catalog.check_subject(fields)
        values, errors = checked.values, checked.errors
        code = values.get("region_code")
        if code:
            region = regions.get(code) if regions is not None else self.session.get(Region, code)
            if region is None:
                errors["region_code"] = "区划代码不存在"
            elif region.level not in KIND_LEVELS[values["kind"]]:
                errors["region_code"] = ("农户应登记在村(社区)" if values["kind"] == "household"
                                         else "项目应登记在村或乡镇")
            elif not AccessPolicy.may_register(actor, code):
                errors["region_code"] = "该地区不在您的登记辖区内"
        cadre = values.get("attrs", {}).get("assistance_cadre")
        if cadre and code and "region_code" not in errors:
            known = cadres.get(code, set()) if cadres is not None else {u.username for u in self.assistance_cadres(code)}
            if cadre not in known:
                errors["attrs.assistance_cadre"] = f"{cadre} 不是本村在岗的帮扶责任人"
        return checked

    def _label(self, subject: Subject, actor: Actor) -> str:
        region = self.session.get(Region, subject.region_code)
        name = subject.name if actor.covers(subject.region_code) else subject.name[:1] + "*" * (len(subject.name) - 1)
        return f"{name}(编号 {subject.id},{region.name if region else subject.region_code})"

    def duplicate(self, values: dict[str, Any], actor: Actor, own_id: int | None = None) -> None:
        """:raises DuplicateSubjectError: the ID number or a member's is registered to another subject, or a
        project of that name exists in the region."""
        others = Subject.id != own_id if own_id else Subject.id.is_not(None)
        number = values.get("id_number")
        if number:
            found = self.session.scalar(select(Subject).where(Subject.kind == values["kind"],
                                                              Subject.id_number == number, others))
            if found is not None:
                raise DuplicateSubjectError(f"身份证号 {number} 已登记:{self._label(found, actor)}", "id_number", found)
        for i, member in enumerate(values.get("members") or []):
            mid = member.get("id_number")
            if not mid:
                continue
            found = self.session.scalar(
                select(Subject).join(SubjectMember, SubjectMember.subject_id == Subject.id)
                .where(SubjectMember.id_number == mid, others))
            if found is None and mid != number:
                found = self.session.scalar(select(Subject).where(Subject.kind == "household",
                                                                  Subject.id_number == mid, others))
            if found is not None:
                raise DuplicateSubjectError(f"成员身份证号 {mid} 已登记在:{self._label(found, actor)}",
                                            f"members[{i}].id_number", found)
        if values["kind"] == "project":
            found = self.session.scalar(select(Subject).where(Subject.kind == "project", others,
                                                              Subject.region_code == values["region_code"],
                                                              Subject.name == values["name"]))
            if found is not None:
                raise DuplicateSubjectError(f"本地区已有同名项目:{self._label(found, actor)}", "name", found)

    # ------------------------------------------------------------------ writing
    def create(self, actor: Actor, fields: dict[str, Any], client_addr: str | None = None) -> Subject:
        """Register a household or project.

        :raises ForbiddenError: the region lies outside the actor's registrar grants.
        :raises ValidationError: a field is invalid (``errors`` keyed by field).
        :raises DuplicateSubjectError: already registered (names the existing record).
        """
        values = self._checked(actor, fields)
        self.duplicate(values, actor)
        (subject,) = self.add_many(actor, [values], "create")
        self.audit.record("subject_create", user_id=actor.user_id, step=f"登记{catalog.KINDS[subject.kind]}",
                          detail={"subject_id": subject.id, "name": subject.name}, client_addr=client_addr)
        return subject

    def add_many(self, actor: Actor, checked: list[dict[str, Any]], action: str) -> list[Subject]:
        """Insert checked values as new subjects with their members and first revisions, in batches (the
        import's path too: it checks every row first).

        :raises ConflictError: an ID number was registered meanwhile (the unique index refused it).
        """
        subjects = [Subject(kind=v["kind"], region_code=v["region_code"], name=v["name"], id_number=v["id_number"],
                            attrs=v["attrs"], is_active=True, revision=1) for v in checked]
        now = self.clock.now()
        # no savepoint: on SQLite (pysqlite) releasing one that opened the transaction commits it; a refused
        # flush raises and the unit of work rolls everything back
        try:
            self.session.add_all(subjects)
            self.session.flush()
            for subject, values in zip(subjects, checked, strict=True):
                self._write_members(subject.id, values["members"])
            self.session.add_all([SubjectRevision(subject_id=subject.id, revision=1, action=action,
                                                  changed_by_id=actor.user_id, changed_at=now,
                                                  changes=_diff({}, {**values, "is_active": True}))
                                  for subject, values in zip(subjects, checked, strict=True)])
            self.session.flush()
        except IntegrityError:
            raise ConflictError("有身份证号刚被他人登记,请刷新后重试") from None
        return subjects

    def update(self, subject_id: int, actor: Actor, changes: dict[str, Any], client_addr: str | None = None,
               expected_revision: int | None = None) -> Subject:
        """Change a subject: top-level fields replace, ``attrs`` merges (a null removes the key), ``members``
        replaces the list, ``is_active`` deactivates or reactivates. One revision row names what changed.

        :raises NotFoundError: not in the actor's jurisdiction.
        :raises ForbiddenError: the actor may read but not edit here, or moves it outside their grants.
        :raises ConflictError: ``expected_revision`` is not the current one (someone edited meanwhile).
        :raises ValidationError: a field is invalid.
        :raises DuplicateSubjectError: the new ID number is registered to another subject.
        """
        subject = self.get(subject_id, actor)
        if self._is_postgres():  # one editor at a time (SQLite serializes writers anyway)
            self.session.refresh(subject, with_for_update=True)
        if not AccessPolicy.may_register(actor, subject.region_code):
            raise ForbiddenError("您只能查看、不能修改该对象")
        if expected_revision is not None and expected_revision != subject.revision:
            raise ConflictError(f"该对象已被他人修改(当前第 {subject.revision} 版),请刷新后重试")
        unknown = sorted(set(changes) - {"name", "id_number", "region_code", "attrs", "members", "is_active"})
        if unknown:
            raise ValidationError("有不能修改的字段", {k: "不能修改此字段" for k in unknown})
        before = self.fields_of(subject)
        fields = {**before, **{k: v for k, v in changes.items() if k != "is_active"}}
        if "attrs" in changes:
            if not isinstance(changes["attrs"], dict):
                raise ValidationError("attrs 应为对象", {"attrs": "attrs 应为对象"})
            merged = {**before["attrs"], **changes["attrs"]}
            fields["attrs"] = {k: v for k, v in merged.items() if v is not None}
        if changes.get("members") and "members" not in (changes.get("attrs") or {}):
            fields["attrs"].pop("members", None)  # the household size follows a new member list unless given
        active = changes.get("is_active", subject.is_active)
        if not isinstance(active, bool):
            raise ValidationError("is_active 应为 true 或 false", {"is_active": "is_active 应为 true 或 false"})
        values = self._checked(actor, fields)
        self.duplicate(values, actor, own_id=subject.id)
        diff = _diff({**before, "is_active": subject.is_active}, {**values, "is_active": active})
        diff.pop("kind", None)
        if not diff:
            return subject
        subject.name, subject.id_number, subject.region_code = values["name"], values["id_number"], values["region_code"]
        subject.attrs, subject.is_active = values["attrs"], active
        subject.revision += 1
        try:
            if "members" in diff:
                for m in self.members(subject.id):
                    self.session.delete(m)
                self.session.flush()
                self._write_members(subject.id, values["members"])
            self.session.flush()
        except IntegrityError:
            raise ConflictError("身份证号刚被他人登记,请刷新后重试") from None
        action = ("deactivate" if not active else "reactivate") if set(diff) == {"is_active"} else "update"
        self.session.add(SubjectRevision(subject_id=subject.id, revision=subject.revision, action=action,
                                         changed_by_id=actor.user_id, changed_at=self.clock.now(), changes=diff))
        self.audit.record(f"subject_{action}", user_id=actor.user_id, step=f"{_ACTION_NAMES[action]}{subject.name}",
                          detail={"subject_id": subject.id, "revision": subject.revision, "fields": sorted(diff)},
                          client_addr=client_addr)
        return subject

    def _checked(self, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        checked = self.check(actor, fields)
        if checked.errors.get("region_code") == "该地区不在您的登记辖区内":
            raise ForbiddenError("该地区不在您的登记辖区内")
        if checked.errors:
            raise ValidationError("登记信息有误:" + ";".join(checked.errors.values()), checked.errors)
        return checked.values

    def _write_members(self, subject_id: int, members: list[dict[str, Any]]) -> None:
        self.session.add_all([SubjectMember(subject_id=subject_id, position=i, **m) for i, m in enumerate(members)])

    def _is_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"


_ACTION_NAMES = {"update": "修改", "deactivate": "停用", "reactivate": "恢复"}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Changed fields as ``{field: [before, after]}``; attrs compare key by key (``attrs.category``)."""
    out: dict[str, Any] = {}
    for key in ("kind", "region_code", "name", "id_number", "members", "is_active"):
        old_value, new_value = before.get(key), after.get(key)
        if key in after and old_value != new_value and not (old_value in (None, []) and new_value in (None, [])):
            out[key] = [old_value, new_value]
    old, new = before.get("attrs") or {}, after.get("attrs") or {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out[f"attrs.{key}"] = [old.get(key), new.get(key)]
    return out
