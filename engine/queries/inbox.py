"""Read-side queries: inboxes and case history, always over indexed rows, never blobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Integer, and_, any_, bindparam, func, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, lazyload, load_only, selectinload

from engine.access import regions
from engine.access.assignment import Actor, region_prefix
from engine.access.policy import AccessPolicy
from engine.access.regions import PREFIX_LENGTH
from engine.core.db import is_postgres
from engine.core.errors import ValidationError
from engine.models import (
    AuditEvent,
    Case,
    CaseCc,
    CaseStatus,
    Procedure,
    ProcedureVersion,
    Region,
    Subject,
    TaskRow,
    TaskStatus,
    TimerRow,
    TimerStatus,
)
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.forms import valid_cn_id
from engine.queries.names import name_contains
from engine.queries.paging import COUNT_CAP, Keyset, Page, beyond, beyond_nulls_last, read_page
from engine.runtime.case_data import merged_data  # noqa: F401 (read models use it under this name)

VIEWS = ("todo", "done", "started", "cc")
SEARCH_FIELDS = ("name", "id_number", "region", "procedure", "status", "date_from", "date_to", "due")
DUE_FILTERS = ("soon", "overdue")
MAX_NAME_LENGTH = 40
PER_PAGE = 50
MAX_LISTED_SUBJECTS = 2000  # a name matching more subjects narrows 待办 by a subquery instead of a list of ids
# each tab's sort key, as its cursor carries it (engine/queries/paging.py)
KEY_KINDS = {"todo": ("datetime?", "datetime", "int"), "done": ("datetime", "int"), "started": ("datetime", "int"),
             "cc": ("datetime", "int")}


@dataclass(frozen=True)
class InboxSearch:
    """The inbox's search form: every field narrows all four tabs (``due`` only 待办)."""

    name: str = ""  # household/subject name contains
    id_number: str = ""  # exact 18-character resident ID number
    region: str = ""  # a region code: that region and everything inside it
    procedure: str = ""  # procedure code
    status: str = ""  # case status
    date_from: date | None = None  # task arrival (待办/已办) or case start (我发起的/抄送我的), China dates
    date_to: date | None = None
    due: str | None = None

    def params(self) -> dict[str, str]:
        """The non-empty fields as query parameters (kept across tabs and pages)."""
        out = {k: getattr(self, k) for k in SEARCH_FIELDS}
        return {k: (v.isoformat() if isinstance(v, date) else str(v)) for k, v in out.items() if v}


@dataclass(frozen=True)
class RegionChoice:
    """One select of the inbox's region picker: its regions, the one chosen ("" none) and the name of the
    region they lie in ("" for the top select, whose 全部 is the actor's whole jurisdiction)."""

    options: list[Region]
    chosen: str
    parent_name: str


def chosen_region(values: list[str]) -> str:
    """The region the picker's selects name, top down: the deepest one inside the one above it (a lower
    select left over from another choice above it, submitted without the script, is ignored)."""
    chosen, above = "", ""  # the value kept, and its normalized code
    for value in (v.strip() for v in values):
        if not value:
            break
        try:
            code = regions.normalize(value)
        except ValueError:
            code = ""
        if chosen and not (above and code and code != above and code.startswith(region_prefix(above))):
            break
        chosen, above = value, code
    return chosen


class InboxQueries:
    def __init__(self, session: Session):
        self.session = session
        self._found: dict[tuple[str, str], list[int] | None] = {}  # a search's subjects, for 待办 (_found_subjects)

    # ------------------------------------------------------------------ search
    def parse_search(self, args: Mapping[str, Any], actor: Actor) -> InboxSearch:
        """The search fields from query parameters, checked.

        :raises ValidationError: field → message for an invalid ID number, a region outside the
            actor's jurisdiction, an unknown procedure or status, a bad date or an inverted range.
        """
        def text(key: str) -> str:
            value = args.get(key)
            return value.strip() if isinstance(value, str) else ""

        errors: dict[str, str] = {}
        name = text("name")
        if len(name) > MAX_NAME_LENGTH:
            errors["name"] = f"姓名不能超过 {MAX_NAME_LENGTH} 字"
        id_number = text("id_number").upper()
        if id_number and not valid_cn_id(id_number):
            errors["id_number"] = "身份证号应为 18 位,且出生日期和校验位正确"
        # the picker's cascading selects all submit ``region``: the deepest consistent one counts
        getlist = getattr(args, "getlist", None)
        region = chosen_region([v for v in getlist("region") if isinstance(v, str)]) if getlist else text("region")
        if region:
            try:
                region = regions.normalize(region)
            except ValueError:
                errors["region"] = "地区代码无效"
            else:
                if not actor.covers(region) or self.session.get(Region, region) is None:
                    errors["region"] = "只能选择本辖区内的地区"
        procedure = text("procedure")
        if procedure and self.session.scalar(select(Procedure.id).where(Procedure.code == procedure)) is None:
            errors["procedure"] = "事项不存在"
        status = text("status")
        if status and status not in {s.value for s in CaseStatus}:
            errors["status"] = "状态无效"
        dates: dict[str, date | None] = {}
        for key in ("date_from", "date_to"):
            raw = text(key)
            try:
                dates[key] = date.fromisoformat(raw) if raw else None
            except ValueError:
                errors[key] = "日期格式应为 YYYY-MM-DD"
        date_from, date_to = dates.get("date_from"), dates.get("date_to")
        if date_from and date_to and date_from > date_to:
            errors["date_to"] = "结束日期不能早于开始日期"
        due = text("due") or None
        if due is not None and due not in DUE_FILTERS:
            errors["due"] = "期限筛选只能是 soon 或 overdue"
        if errors:
            raise ValidationError("查询条件有误", errors)
        return InboxSearch(name, id_number, region, procedure, status, dates.get("date_from"),
                           dates.get("date_to"), due)

    def region_picker(self, actor: Actor, selected: str = "") -> list[RegionChoice]:
        """The inbox's region picker as cascading selects: the regions below the actor's jurisdiction (its
        grants' regions if several, else the one region's children), then the children of each region chosen
        down to ``selected`` (already checked to lie inside) and of ``selected`` itself. A county's user gets
        its 20-odd townships, and a township's villages once one is chosen — never all its 343 regions."""
        roots = sorted({g.region_code for g in actor.grants})
        roots = [r for r in roots if not any(r != o and r.startswith(region_prefix(o)) for o in roots)]
        if not roots:
            return []
        chain: list[str] = []  # the regions chosen, top down: selected and its ancestors below a root
        code: str | None = selected or None
        while code is not None and code not in roots:
            chain.insert(0, code)
            row = self.session.get(Region, code)
            code = row.parent_code if row is not None else None
        if code is None:
            chain = []  # outside the jurisdiction (parse_search refuses it): the top select only
        elif len(roots) > 1:
            chain.insert(0, code)
        picker: list[RegionChoice] = []
        parents: list[str | None] = [None if len(roots) > 1 else roots[0], *chain]
        for depth, parent in enumerate(parents):
            options = self.region_children(actor, parent) if parent else list(
                self.session.scalars(select(Region).where(Region.code.in_(roots)).order_by(Region.code)))
            if not options:
                break
            above = self.session.get(Region, parent) if parent and depth else None
            picker.append(RegionChoice(options, chain[depth] if depth < len(chain) else "",
                                       above.name if above is not None else ""))
        return picker

    def procedure_choices(self) -> list[tuple[str, str]]:
        """(code, name) of every procedure with a deployed version, for the search's 事项 select: one
        query over the procedure table, not the versions' files and specs."""
        deployed = select(ProcedureVersion.id).where(ProcedureVersion.procedure_id == Procedure.id).exists()
        return [(code, name) for code, name in self.session.execute(
            select(Procedure.code, Procedure.name).where(deployed).order_by(Procedure.code))]

    def region_children(self, actor: Actor, code: str) -> list[Region]:
        """The regions directly inside code, which must lie inside the actor's jurisdiction (else none)."""
        if not actor.covers(code):
            return []
        return list(self.session.scalars(select(Region).where(Region.parent_code == code).order_by(Region.code)))

    def _todo_branches(self, actor: Actor) -> list:
        """The 待办 visibility as disjoint conditions, each one an index range (unioned, never OR-ed).

        A task assigned to the actor (claimed, 转办, 委派, a 加签 co-signer's) is theirs even outside their
        roles: the permission follows the task; an unassigned open task is in the inbox of each (role, scope)
        the actor holds; a task waiting on its co-signers is in nobody's inbox. Kept apart, each condition is
        a range of a partial index (ix_task_open_assigned, ix_task_open_pool) read in inbox order, so a
        COUNT reads index entries only and a page stops after its rows however large the inbox is.
        """
        open_ = TaskRow.status == TaskStatus.open
        branches = [and_(open_, TaskRow.assignee_id == actor.user_id)]
        branches += [and_(open_, TaskRow.assignee_id.is_(None), TaskRow.role_code == r, TaskRow.scope_code == s)
                     for r, s in sorted(actor.scopes)]
        return branches

    def _todo_named(self, actor: Actor):
        """The 待办 visibility as one condition for a search by named subjects: the actor's assigned tasks or
        their pools' unassigned ones, with the pool given as one expression no index serves, so that
        PostgreSQL reads the named subjects' open tasks (ix_task_open_subject) and filters those. Offered
        the pools' ranges it takes them: it prices a range of ix_task_open_pool by the heap order of a
        bulk load (a few pages) where its rows lie on as many pages as it holds tasks (5,342 for a county)."""
        pools = [f"{role} {scope}" for role, scope in sorted(actor.scopes)]
        pooled = and_(TaskRow.assignee_id.is_(None), (TaskRow.role_code + " " + TaskRow.scope_code).in_(pools))
        return and_(TaskRow.status == TaskStatus.open, or_(TaskRow.assignee_id == actor.user_id, pooled))

    def _narrow(self, stmt, entity, search: InboxSearch, open_tasks: bool = False):
        """The search's conditions on a tab's statement (rows of entity, joined to Case where needed).

        Open tasks (待办) filter their own copy of the case's subject (ix_task_open_subject: the matching
        subjects' open tasks, then the actor's pools among them); other tabs go through the case's."""
        date_col = entity.created_at
        # task tabs filter the task's own region (a copy of its case's); case filters go through the join
        region_col = TaskRow.region_code if entity is TaskRow else Case.region_code
        subject_col = TaskRow.subject_id if open_tasks else Case.subject_id
        if search.name or search.id_number:
            found = self._found_subjects(search)  # looked up once for every tab of the request
            stmt = stmt.where(self._among(subject_col, self._subjects(search) if found is None else found))
        if search.region:
            stmt = stmt.where(region_col.startswith(search.region[:PREFIX_LENGTH[regions.level_of(search.region)]]))
        if search.procedure:
            versions = select(ProcedureVersion.id).join(Procedure).where(Procedure.code == search.procedure)
            stmt = stmt.where(Case.procedure_version_id.in_(versions))
        if search.status:
            stmt = stmt.where(Case.status == CaseStatus(search.status))
        if search.date_from:
            stmt = stmt.where(date_col >= datetime.combine(search.date_from, time(0), CHINA_TZ))
        if search.date_to:
            stmt = stmt.where(date_col < datetime.combine(search.date_to + timedelta(days=1), time(0), CHINA_TZ))
        return stmt

    def _subjects(self, search: InboxSearch):
        """The ids of the subjects the search's name and ID number select, as a statement."""
        subjects = select(Subject.id)
        if search.name:
            subjects = subjects.where(name_contains(Subject, search.name, self.session.get_bind().dialect.name))
        if search.id_number:
            subjects = subjects.where(Subject.id_number == search.id_number)
        return subjects

    def _among(self, column, ids):
        """column IN ids — on PostgreSQL a list of ids as one array parameter (``= ANY(:ids)``): the planner sees
        the same values, and the statement is not re-rendered with a placeholder per id on every execution (a
        name matching 161 subjects at 1 M cases, in each of the request's five statements)."""
        if isinstance(ids, list) and is_postgres(self.session.get_bind()):
            return column == any_(bindparam("subject_ids", ids, type_=ARRAY(Integer), unique=True))
        return column.in_(ids)

    def _found_subjects(self, search: InboxSearch) -> list[int] | None:
        """The ids of the subjects the search names (None without a name or ID number, or beyond
        MAX_LISTED_SUBJECTS), looked up once per unit of work.

        Given as a list, the planner knows how many subjects it probes ix_task_open_subject for; given as a
        subquery it guesses from the name's statistics (99 subjects for a name that matched one).
        """
        if not (search.name or search.id_number):
            return None
        key = (search.name, search.id_number)
        if key not in self._found:
            ids = list(self.session.scalars(self._subjects(search).limit(MAX_LISTED_SUBJECTS + 1)))
            self._found[key] = ids if len(ids) <= MAX_LISTED_SUBJECTS else None
        return self._found[key]

    def narrow_cases(self, stmt, search: InboxSearch):
        """The search's conditions on a statement over ``Case`` (the 台账 export uses the inbox's filters)."""
        return self._narrow(stmt, Case, search)

    def _tab(self, view: str, actor: Actor, search: InboxSearch, now: datetime | None, soon: timedelta | None,
             count: bool = False, limit: int | None = None, after: Keyset | None = None):
        """The one query builder behind every tab: its rows with their sort keys (or their bounded COUNT).

        Visibility comes first (my roles' open tasks, tasks I completed, cases I started, cases copied to
        me); the search only narrows it, so it never reveals anything the tab would not show. Each tab is
        an index range in the tab's order (the 待办 one range per role and scope, unioned), read from the
        page's keyset on, so its COUNT and any page cost what the actor can see, not what the database
        holds nor how far the actor has paged. A COUNT stops at ``COUNT_CAP`` + 1.
        """
        backward = after is not None and after.backward
        if view in ("todo", "done"):
            todo = view == "todo"
            # 待办 searches by name or ID number on the task's copy of the subject; 已办 (no index by subject
            # over all tasks) through its case
            joins_case = bool(search.procedure or search.status or (not todo and (search.name or search.id_number)))

            # a 待办 page's ranges carry only the sort keys; the page's rows are read by id once merged (a union of
            # whole rows gave each range's subquery a proxy of every task column, built again on every request)
            columns = (TaskRow.id,) if count else (TaskRow.id, TaskRow.due_at, TaskRow.created_at) if todo \
                else (TaskRow,)

            def rows(condition):
                stmt = select(*columns).where(condition)
                if joins_case:
                    stmt = stmt.join(Case, Case.id == TaskRow.case_id)
                return self._narrow(stmt, TaskRow, search, open_tasks=todo)

            if view == "done":
                stmt = rows(TaskRow.completed_by_id == actor.user_id)
                if count:
                    return _bounded_count(stmt)
                done_keys = (TaskRow.completed_at, TaskRow.id)
                if after is not None:
                    stmt = stmt.where(beyond(done_keys, after.key, True, backward))
                order = [k.asc() if backward else k.desc() for k in done_keys]
                return stmt.add_columns(*done_keys).order_by(*order).options(_case_keys(TaskRow))
            due = []
            if search.due == "overdue":
                due = [TaskRow.due_at < now]
            elif search.due == "soon":
                if now is None or soon is None:
                    raise ValueError("the due-soon filter needs now and soon")
                due = [TaskRow.due_at >= now, TaskRow.due_at <= now + soon]
            parts = [None] if after is None else beyond_nulls_last(TaskRow.due_at, (TaskRow.created_at, TaskRow.id),
                                                                     after.key, backward)
            # a few named subjects: their open tasks are few, read from ix_task_open_subject under the whole
            # visibility at once; one range per pool would read every task of each pool to find them
            visible = [self._todo_named(actor)] if self._found_subjects(search) is not None \
                else self._todo_branches(actor)
            branches = [rows(and_(b, *due)) if part is None else rows(and_(b, part, *due))
                        for b in visible for part in parts]
            if count:
                return _bounded_count(union_all(*branches))
            if limit is not None:  # each range read in order and only as far as the page needs
                branches = [select(b.order_by(*_todo_order(TaskRow, backward)).limit(limit).subquery())
                            for b in branches]
            merged = union_all(*branches).subquery()
            return (select(TaskRow).join(merged, merged.c.id == TaskRow.id)
                    .add_columns(merged.c.due_at, merged.c.created_at, merged.c.id)
                    .order_by(*_todo_order(merged.c, backward)).options(_case_keys(TaskRow)))
        stmt = select(Case.id if count else Case).select_from(Case)
        if view == "started":
            stmt = stmt.where(Case.started_by_id == actor.user_id)
            keys: tuple = (Case.created_at, Case.id)
        else:
            # a CC opens nothing by itself: only cases the actor may see by jurisdiction are listed
            stmt = stmt.join(CaseCc, CaseCc.case_id == Case.id).where(
                CaseCc.user_id == actor.user_id, AccessPolicy.jurisdiction_clause(actor))
            keys = (CaseCc.created_at, Case.id)
        stmt = self._narrow(stmt, Case, search)
        if count:
            return _bounded_count(stmt)
        if after is not None:
            stmt = stmt.where(beyond(keys, after.key, True, backward))
        return (stmt.add_columns(*keys).order_by(*[k.asc() if backward else k.desc() for k in keys])
                .options(_light_version()))

    def page(self, view: str, actor: Actor, search: InboxSearch | None = None, after: Keyset | None = None,
             per_page: int = PER_PAGE, now: datetime | None = None, soon: timedelta | None = None) -> Page:
        """One page of a tab (task rows for 待办/已办, cases for 我发起的/抄送我的) under the search, from the
        keyset after on (None: the first page), with the keysets of the pages before and after it.

        A task row carries its case's title; the listed tasks' cases come in one more query with their
        version only (批量审批 asks whether the step allows it), never their workflow state.
        """
        search = search or InboxSearch()
        stmt = self._tab(view, actor, search, now, soon, limit=per_page + 1, after=after)
        rows = [(r[0], tuple(r[1:])) for r in self.session.execute(stmt.limit(per_page + 1))]
        found = read_page(rows, per_page, after)
        return found if found is not None else self.page(view, actor, search, None, per_page, now, soon)

    def counts(self, actor: Actor, search: InboxSearch | None = None, now: datetime | None = None,
               soon: timedelta | None = None) -> dict[str, int]:
        """How many rows each tab holds under the search, ``COUNT_CAP`` + 1 meaning more than
        ``COUNT_CAP``: one bounded COUNT query per tab."""
        out = {}
        for view in VIEWS:
            stmt = self._tab(view, actor, search or InboxSearch(), now, soon, count=True)
            out[view] = self.session.scalar(stmt) or 0
        return out

    def todo(self, actor: Actor, limit: int = 200, due: str | None = None, now=None,
             soon=None) -> list[TaskRow]:
        """Open tasks assigned to the actor's roles in their jurisdiction, soonest due first.

        due="overdue" keeps tasks past their due time; due="soon" those due within soon of now.
        """
        return self.page("todo", actor, InboxSearch(due=due), None, limit, now, soon).items

    def done(self, actor: Actor, limit: int = 200) -> list[TaskRow]:
        return self.page("done", actor, None, None, limit).items

    def started(self, actor: Actor, limit: int = 200) -> list[Case]:
        return self.page("started", actor, None, None, limit).items

    def cc(self, actor: Actor, limit: int = 200) -> list[Case]:
        """抄送我的: cases copied to the actor."""
        return self.page("cc", actor, None, None, limit).items

    def instance_progress(self, rows: list[TaskRow]) -> dict[int, dict[str, Any]]:
        """会签/或签 rows → their step's progress: mode, label (e.g. "会签 2/3"), signer, done, total.

        Counts the rows of each row's activation (``instance_group``) in one grouped query.
        """
        from engine.runtime.countersign import progress_label

        groups = {r.instance_group for r in rows if r.instance_group}
        if not groups:
            return {}
        done: dict[str, int] = dict.fromkeys(groups, 0)
        total: dict[str, int] = dict.fromkeys(groups, 0)
        for group, status, count in self.session.execute(
                select(TaskRow.instance_group, TaskRow.status, func.count(TaskRow.id))
                .where(TaskRow.instance_group.in_(groups)).group_by(TaskRow.instance_group, TaskRow.status)):
            total[group] += count
            if status == TaskStatus.completed:
                done[group] += count
        return {r.id: {"mode": r.multi_sign, "label": progress_label(r.multi_sign, done[r.instance_group],
                                                                     total[r.instance_group]),
                       "signer": r.assignee.username if r.assignee else None,
                       "done": done[r.instance_group], "total": total[r.instance_group]}
                for r in rows if r.instance_group}

    def case_tasks(self, case_id: int) -> list[TaskRow]:
        return list(self.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)))

    def case_history(self, case_id: int) -> list[AuditEvent]:
        return list(self.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)))

    def case_timers(self, case_id: int) -> list[TimerRow]:
        return list(self.session.scalars(select(TimerRow).where(TimerRow.case_id == case_id).order_by(TimerRow.id)))

    def subject_cases(self, subject_id: int) -> list[Case]:
        return list(self.session.scalars(
            select(Case).where(Case.subject_id == subject_id).order_by(Case.created_at.desc())))

    def linked_cases(self, case: Case) -> list[Case]:
        """The case this one was started from, and the cases it started."""
        stmt = select(Case).where(or_(Case.parent_case_id == case.id, Case.id == case.parent_case_id))
        return list(self.session.scalars(stmt.order_by(Case.id)))

    def waiting_timer_count(self) -> int:
        return self.session.scalar(select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.waiting)) or 0


def _todo_order(task, backward: bool = False) -> tuple:
    """待办 order: soonest due first, undated last, then by arrival (the order of ix_task_open_pool);
    backward the exact reverse (a previous page is read from its end)."""
    if backward:
        return task.due_at.desc().nulls_first(), task.created_at.desc(), task.id.desc()
    return task.due_at.asc().nulls_last(), task.created_at.asc(), task.id.asc()


def _case_keys(task):
    """Load the listed tasks' cases in one query, and their versions in one more, without the cases' state
    and subject and the versions' files and spec (a step's properties come from the spec cache by the
    version's content hash; a miss loads the spec then)."""
    return selectinload(task.case).options(load_only(Case.id, Case.procedure_version_id, Case.title),
                                           lazyload(Case.subject), _light_version())


def _light_version():
    """Load a case's version in the page's one query per relation, without its files and spec (the blobs
    of every procedure, ~100–200 KB each)."""
    return selectinload(Case.version).options(load_only(
        ProcedureVersion.id, ProcedureVersion.procedure_id, ProcedureVersion.version,
        ProcedureVersion.content_hash, ProcedureVersion.process_id))


def _bounded_count(stmt):
    """COUNT of stmt's rows, reading at most COUNT_CAP + 1 of them."""
    return select(func.count()).select_from(stmt.limit(COUNT_CAP + 1).subquery())


def diagram_marks(case: Case, tasks: list[TaskRow], timers: list[TimerRow]) -> dict[str, list[str]]:
    """Element ids to mark on the case diagram: done, current and returned steps."""
    done = set(case.path or [])
    done |= {r.spec_name for r in tasks if r.status == TaskStatus.completed and r.action == "approve"}
    done |= {t.spec_name for t in timers if t.status == TimerStatus.fired}
    current = {r.spec_name for r in tasks if r.status == TaskStatus.open}
    current |= {t.spec_name for t in timers if t.status == TimerStatus.waiting}
    returned = {r.spec_name for r in tasks if r.action == "return"}
    return {"done": sorted(done - current), "current": sorted(current), "returned": sorted(returned - current)}


def returned_by(tasks: list[TaskRow], row: TaskRow) -> TaskRow | None:
    """The 退回 that reopened row (its step, who, and the reason), or None if row arrived otherwise.

    The last step completed before row was created decides: a return there sent the case to row.
    """
    before = [t for t in tasks if t.status == TaskStatus.completed and t.id < row.id
              and t.completed_at is not None and t.completed_at <= row.created_at]
    if not before:
        return None
    last = max(before, key=lambda t: (t.completed_at, t.id))
    return last if last.action == "return" else None
