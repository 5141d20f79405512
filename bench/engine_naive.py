"""bench/engine.py's naive baseline: one blob per case with the whole workflow and its spec (usage there)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Integer, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.engine_drive import BENCH_SERIAL, OPINION, PROCEDURE, START, STEPS
from engine.core import clock as clock_mod
from engine.core.clock import FixedClock
from engine.core.db import make_engine
from engine.models import ProcedureVersion, Subject
from engine.procedures.expressions import SCRIPT_ENGINE
from engine.procedures.serialization import FULL_SERIALIZER, spec_from_json
from engine.procedures.step_rules import spec_properties
from engine.runtime.projections import is_timer, timer_due


class NaiveBase(DeclarativeBase):
    pass


class NaiveCase(NaiveBase):
    __tablename__ = "naive_case"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob: Mapped[str] = mapped_column(Text)


class NaivePath:
    name = "naive"

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.clock = FixedClock(START)
        with Session(self.engine) as session:
            version = session.scalar(select(ProcedureVersion).where(ProcedureVersion.process_id == PROCEDURE)
                                     .order_by(ProcedureVersion.version.desc()).limit(1))
            # a naive system parses its BPMN once at startup to create new cases
            self.spec, self.subprocess_specs = spec_from_json(version.spec_json)
            self.settings = json.loads(version.files["procedure.json"]).get("settings", {})
        self._waiting: dict[int, datetime | None] = {}  # case id → next timer due, while no user task is ready
        self._issuing: set[int] = set()  # cases whose ready user task is an issuance step (noticeKind)

    def start(self, subject_id: int) -> int:
        with Session(self.engine) as session:
            subject = session.get(Subject, subject_id)
            row = NaiveCase(blob="{}")
            session.add(row)
            session.flush()
            initial = {
                "case_id": row.id,
                "subject_name": subject.name,
                "subject_kind": subject.kind,
                "region_code": subject.region_code,
                "region_name": "",
                "settings": self.settings,
                **{f"subject_{k}": v for k, v in (subject.attrs or {}).items()},
            }
            with clock_mod.using(self.clock):
                wf = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=SCRIPT_ENGINE)
                for task in wf.get_tasks(state=TaskState.READY):
                    task.data.update(initial)
                wf.do_engine_steps()
            row.blob = FULL_SERIALIZER.serialize_json(wf)
            session.commit()
            return row.id

    def complete(self, case_id: int, step: int) -> str:
        """Load the blob, complete the ready user task, save the blob; return the task's name."""
        _username, data = STEPS[step]
        with Session(self.engine) as session:
            row = session.get(NaiveCase, case_id)
            wf = FULL_SERIALIZER.deserialize_json(row.blob)
            wf.script_engine = SCRIPT_ENGINE
            with clock_mod.using(self.clock):
                ready = wf.get_tasks(state=TaskState.READY, manual=True)
                if len(ready) != 1:
                    raise RuntimeError(f"naive case {case_id}: {len(ready)} ready user tasks at step {step + 1}")
                task = ready[0]
                # the same data XiangFlow puts into the task, so state sizes compare like for like
                task.data.update(data)
                task.data["decision"] = "approve"
                task.data["last_opinion"] = OPINION
                task.data["opinions"] = {**task.data.get("opinions", {}), task.task_spec.bpmn_id: OPINION}
                task.run()
                wf.do_engine_steps()
                self._note(case_id, wf)
            row.blob = FULL_SERIALIZER.serialize_json(wf)
            session.commit()
            return task.task_spec.bpmn_name or task.task_spec.bpmn_id

    def _note(self, case_id: int, wf) -> None:
        """Remember whether the case now waits for a timer or for an issuance step."""
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        if not ready:
            self._waiting[case_id] = _next_due(wf)
        else:
            self._waiting.pop(case_id, None)
        if any(_notice_kind(t) for t in ready):
            self._issuing.add(case_id)
        else:
            self._issuing.discard(case_id)

    def issue_notices(self, case_ids: list[int]) -> int:
        """Run the ready issuance steps of these cases with the bench serial (load, run, save; not timed)."""
        issued = 0
        for case_id in sorted(self._issuing & set(case_ids)):
            with Session(self.engine) as session:
                row = session.get(NaiveCase, case_id)
                wf = FULL_SERIALIZER.deserialize_json(row.blob)
                wf.script_engine = SCRIPT_ENGINE
                with clock_mod.using(self.clock):
                    for task in wf.get_tasks(state=TaskState.READY, manual=True):
                        if _notice_kind(task):
                            task.data["notice_serial"] = BENCH_SERIAL
                            task.run()
                            issued += 1
                    wf.do_engine_steps()
                    self._note(case_id, wf)
                row.blob = FULL_SERIALIZER.serialize_json(wf)
                session.commit()
        return issued

    def waiting(self, case_ids: list[int]) -> set[int]:
        return set(self._waiting) & set(case_ids)

    def future_timers(self, case_ids: set[int]) -> bool:
        now = self.clock.now()
        return any(self._waiting.get(c) is None or self._waiting[c] >= now for c in case_ids)

    def pass_day(self, case_ids: set[int], advance: bool = True) -> None:
        """Move the clock a day and let due timers fire in the waiting cases (load, fire, save)."""
        if advance:
            self.clock.advance(timedelta(days=1))
        for case_id in case_ids:
            due = self._waiting.get(case_id)
            if due is not None and due > self.clock.now():
                continue
            with Session(self.engine) as session:
                row = session.get(NaiveCase, case_id)
                wf = FULL_SERIALIZER.deserialize_json(row.blob)
                wf.script_engine = SCRIPT_ENGINE
                with clock_mod.using(self.clock):
                    wf.refresh_timers()
                    wf.do_engine_steps()
                    self._note(case_id, wf)
                row.blob = FULL_SERIALIZER.serialize_json(wf)
                session.commit()

    def close(self) -> None:
        self.engine.dispose()


def _notice_kind(task) -> str | None:
    return spec_properties(task.task_spec).get("noticeKind")


def _next_due(wf) -> datetime | None:
    """The earliest due time of the workflow's waiting timers (frozen when they started waiting)."""
    dues = [timer_due(task) for task in wf.get_tasks(state=TaskState.WAITING) if is_timer(task)]
    return min((due for due in dues if due is not None), default=None)

