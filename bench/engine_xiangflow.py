"""bench/engine.py's XiangFlow paths, warm (live-workflow cache on) and cold (off), and the table of all paths."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, func, select

from bench.engine_drive import BENCH_SERIAL, OPINION, PROCEDURE, START, STEPS
from bench.engine_naive import NaivePath
from engine import demo_data
from engine.core.clock import FixedClock
from engine.core.db import make_engine, make_session_factory
from engine.models import (
    Case,
    IssuedNotice,
    IssuedNoticeCase,
    OfficeKey,
    TaskRow,
    TaskStatus,
    TimerRow,
    TimerStatus,
    User,
)
from engine.runtime.live_cache import LIVE_WORKFLOWS
from engine.uow import UnitOfWork

# the open task of each case (a web request has its id from the inbox link; the bench looks them up before
# each round, untimed), built once
_OPEN_TASKS = select(TaskRow.case_id, TaskRow.id, TaskRow.title).where(
    TaskRow.case_id.in_(bindparam("case_ids", expanding=True)), TaskRow.status == TaskStatus.open)



class XiangFlowPath:
    name = "XiangFlow"

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.factory = make_session_factory(self.engine)
        self.clock = FixedClock(START)
        self.signatures: dict[int, bytes] = {}
        self.open_tasks: dict[int, tuple[int, str]] = {}  # case id → (open task id, title), before each round
        with UnitOfWork(self.factory, self.clock) as work:
            self.actors = {}
            for username in {u for u, _ in STEPS}:
                user = work.session.scalar(select(User).where(User.username == username))
                self.actors[username] = work.directory.actor(user)

    def start(self, subject_id: int) -> int:
        with UnitOfWork(self.factory, self.clock) as work:
            return work.cases.start_case(PROCEDURE, subject_id, self.actors["demo_village"]).id

    def prepare(self, case_ids: list[int]) -> None:
        """Draw each household's signature PNG before the timed rounds (test data: the tablet sends the
        drawn PNG, the server does not draw it), and give each case its 退出告知书 (not timed)."""
        self.signatures = {case_id: demo_data.signature_png(case_id) for case_id in case_ids}
        self.add_exit_notices(case_ids)

    def add_exit_notices(self, case_ids: list[int]) -> None:
        """A 退出告知书 row for each case, as the village issues it before 退出告知 (``requiresNotice``), without
        rendering or signing a PDF (bench/notices.py measures that): the timed rounds measure completions only."""
        if STEPS[-1][1] is not getattr(demo_data, "EXIT_NOTICE", None):
            return
        with UnitOfWork(self.factory, self.clock) as work:
            cases = work.session.scalars(select(Case).where(Case.id.in_(case_ids))).all()
            keys = {k.region_code: k for k in work.session.scalars(
                select(OfficeKey).where(OfficeKey.retired_at.is_(None)))}
            issuer = self.actors["demo_village"].user_id
            for case in cases:
                key = keys[case.region_code]  # the village committee's key (demo_office_keys)
                notice = IssuedNotice(
                    serial=f"{BENCH_SERIAL}-{case.id}", procedure_code=PROCEDURE, kind="exit_notice",
                    kind_name="退出告知书", title="防止返贫监测对象风险消除退出告知书", public=False,
                    region_code=case.region_code, office_key_id=key.id, office_name=key.office_name,
                    issued_by_id=issuer, issued_at=self.clock.now(), document_date=self.clock.now().date().isoformat(),
                    params={}, covers=[], template_sha256="0" * 64, sha256="0" * 64, size_bytes=0, page_count=0,
                    pdf=b"")
                work.session.add(notice)
                work.session.flush()
                work.session.add(IssuedNoticeCase(notice_id=notice.id, case_id=case.id))

    def before_round(self, case_ids: list[int]) -> None:
        """Look up the open task of every case at once (not timed), as the inbox lists them: a completion
        request has the task id from its link (``/tasks/<id>``) and does not look it up."""
        with UnitOfWork(self.factory, self.clock) as work:
            self.open_tasks = {row.case_id: (row.id, row.title) for row in work.session.execute(_OPEN_TASKS, {
                "case_ids": case_ids})}

    def complete(self, case_id: int, step: int) -> str:
        """Complete the case's open task as the web layer does; return the task's title."""
        username, data = STEPS[step]
        found = self.open_tasks.get(case_id)
        if found is None:
            raise RuntimeError(f"case {case_id}: no open task at step {step + 1}")
        task_id, title = found
        with UnitOfWork(self.factory, self.clock) as work:
            if step == 0:  # 入户核查: the household's signature (农户签字), sent with the decision
                work.signatures.complete_signed(task_id, self.actors[username], self.signatures[case_id],
                                                "approve", OPINION, data)
            else:
                work.cases.complete_task(task_id, self.actors[username], "approve", OPINION, data)
            return title

    def issue_notices(self, case_ids: list[int]) -> int:
        """Complete the open issuance steps (出具公示/公告) of these cases; return how many (not timed)."""
        with UnitOfWork(self.factory, self.clock) as work:
            rows = work.session.scalars(select(TaskRow).where(
                TaskRow.case_id.in_(case_ids), TaskRow.status == TaskStatus.open, TaskRow.actions == "issue")).all()
            pending = [(row.case_id, work.cases.issuance_kind(row)) for row in rows]
        for case_id, kind in pending:
            with UnitOfWork(self.factory, self.clock) as work:
                if work.cases.complete_issuance(case_id, kind, self.actors["demo_village"], BENCH_SERIAL) is None:
                    raise RuntimeError(f"case {case_id}: no open issuance step {kind}")
        return len(pending)

    def waiting(self, case_ids: list[int]) -> set[int]:
        """The cases without an open task (a public-notice period is running)."""
        with UnitOfWork(self.factory, self.clock) as work:
            busy = set(work.session.scalars(
                select(TaskRow.case_id).where(TaskRow.case_id.in_(case_ids), TaskRow.status == TaskStatus.open)))
        return set(case_ids) - busy

    def future_timers(self, case_ids: set[int]) -> bool:
        """Whether a waiting timer of these cases is not yet strictly past due (timers fire after their due time)."""
        with UnitOfWork(self.factory, self.clock) as work:
            return work.session.scalar(
                select(func.count(TimerRow.id)).where(TimerRow.case_id.in_(case_ids),
                                                      TimerRow.status == TimerStatus.waiting,
                                                      TimerRow.due_at >= self.clock.now())) > 0

    def pass_day(self, case_ids: set[int], advance: bool = True) -> None:
        """Move the clock a day and fire the timers due (the scheduler's tick)."""
        if advance:
            self.clock.advance(timedelta(days=1))
        while True:
            with UnitOfWork(self.factory, self.clock) as work:
                if not work.cases.fire_due_timers(limit=200):
                    return

    def close(self) -> None:
        self.engine.dispose()


class XiangFlowColdPath(XiangFlowPath):
    """XiangFlow with the live-workflow cache off: every mutation deserializes the stored state, as when
    consecutive requests for one case land on different web processes."""

    name = "XF cold"

    def __init__(self, url: str):
        LIVE_WORKFLOWS.capacity = 0
        LIVE_WORKFLOWS.clear()
        super().__init__(url)



PATHS = {"xiangflow": XiangFlowPath, "xiangflow-cold": XiangFlowColdPath, "naive": NaivePath}
