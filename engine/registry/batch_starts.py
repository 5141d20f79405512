"""批量发起 (定期预判): start one procedure for many subjects as a background job with progress.

``BatchStarts.create`` checks the whole selection up front (the procedure, each subject inside the actor's
jurisdiction and of the procedure's kind; nothing is queued otherwise) and queues a ``start_batch`` row;
``run_start_batch`` works it off one subject per transaction, each through ``StartService.start`` — the
same start, duplicate guard and audit as 发起流程 and ``POST /api/v1/cases/batch``. A subject's outcome is
stored with its start, so no subject is ever half-started: it is started (its case number), skipped (it
has a running case of the procedure: which one), or failed (why, in Chinese, with nothing of it stored).
A job stopped half-way (the process died) is resumed by ``run_start_batch`` from the first subject
without an outcome.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, update
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ForbiddenError, NotFoundError, ValidationError, XiangFlowError
from engine.models import Subject, User
from engine.models.audit import AuditLog
from engine.models.registry import StartBatch
from engine.registry.catalog import normalize_id_number
from engine.registry.service import RegistryService, SubjectSearch
from engine.registry.starts import DuplicateCaseError, StartService

log = logging.getLogger(__name__)

MAX_SUBJECTS = 2000
STATUS_LABELS = {"queued": "排队中", "running": "进行中", "done": "已完成"}
OUTCOME_LABELS = {"started": "已发起", "skipped": "已跳过", "failed": "未发起"}


class BatchStarts:
    def __init__(self, session: Session, clock, starts: StartService, registry: RegistryService):
        self.session = session
        self.clock = clock
        self.starts = starts
        self.registry = registry
        self.audit = AuditLog(session, clock)

    # ------------------------------------------------------------------ choosing the subjects
    def kind_of(self, procedure_code: str) -> str:
        """The subject kind the procedure takes. :raises NotFoundError: no such procedure."""
        version = self.starts.definitions.latest(procedure_code)
        return str(self.starts.definitions.manifest(version).get("subject_kind", "household"))

    def matching(self, actor: Actor, procedure_code: str, search: SubjectSearch) -> list[Subject]:
        """The active subjects of the procedure's kind in the actor's jurisdiction under the search (at most
        ``MAX_SUBJECTS``), in the registry's order.

        :raises ValidationError: (``region``) a region outside the actor's jurisdiction (``RegistryService.search``).
        """
        search.kind, search.active, search.per_page = self.kind_of(procedure_code), "1", MAX_SUBJECTS
        return list(self.registry.search(actor, search, count=False).items)

    def from_id_numbers(self, actor: Actor, procedure_code: str, lines: list[str]) -> list[Subject]:
        """The subjects an uploaded list names by ID number (head or member), one per line.

        :raises ValidationError: (``file`` → every line that names no subject of the actor's, by line number)
            an empty list, too many lines, or lines that match nothing; nothing is chosen then.
        """
        kind = self.kind_of(procedure_code)
        numbers = [(i, normalize_id_number(line) or "") for i, line in enumerate(lines, start=1) if line.strip()]
        if not numbers:
            raise ValidationError("名单为空", {"file": "名单中没有身份证号(每行一个,或 Excel 第一列)"})
        if len(numbers) > MAX_SUBJECTS:
            raise ValidationError("名单过长", {"file": f"一次至多 {MAX_SUBJECTS} 个对象"})
        found: dict[int, Subject] = {}
        problems = []
        for line, number in numbers:
            hits = self.registry.search(actor, SubjectSearch(kind=kind, id_number=number, per_page=2), count=False).items
            if len(hits) != 1:
                problems.append(f"第 {line} 行 {number or '(空)'}:辖区内没有登记此身份证号的{_KIND_NAMES[kind]}")
            else:
                found.setdefault(hits[0].id, hits[0])
        if problems:
            raise ValidationError(f"名单中有 {len(problems)} 行找不到对象,未发起", {"file": ";".join(problems[:50])})
        return list(found.values())

    # ------------------------------------------------------------------ the job
    def create(self, actor: Actor, procedure_code: str, subject_ids: list[int],
               client_addr: str | None = None) -> StartBatch:
        """Queue a batch after checking every subject (in jurisdiction, of the procedure's kind).

        :raises NotFoundError: unknown procedure.
        :raises ValidationError: no subjects, too many, or one the actor may not start it for (named).
        """
        kind = self.kind_of(procedure_code)
        ids = list(dict.fromkeys(subject_ids))
        if not ids or len(ids) > MAX_SUBJECTS:
            raise ValidationError("批量发起的对象数无效", {"subject_ids": f"请选择 1 到 {MAX_SUBJECTS} 个对象"})
        for subject_id in ids:
            try:
                subject = self.registry.get(subject_id, actor)
            except NotFoundError as exc:
                raise ValidationError("所选对象不存在", {"subject_ids": f"对象 {subject_id} 不存在或不在您的辖区"}) from exc
            if subject.kind != kind:
                raise ValidationError("对象类型不符", {"subject_ids": f"{subject.name}不是此流程适用的对象"})
        batch = StartBatch(procedure_code=procedure_code, created_by_id=actor.user_id, created_at=self.clock.now(),
                           status="queued", subject_ids=ids, total=len(ids), started_count=0, skipped_count=0,
                           failed_count=0, results=[])
        self.session.add(batch)
        self.session.flush()
        self.audit.record("batch_start_queued", user_id=actor.user_id, step=f"批量发起 {procedure_code}",
                          detail={"batch_id": batch.id, "procedure": procedure_code, "subjects": len(ids)},
                          client_addr=client_addr)
        return batch

    def get(self, actor: Actor, batch_id: int) -> StartBatch:
        """A batch the actor queued. :raises NotFoundError: no such batch, or another user's."""
        batch = self.session.get(StartBatch, batch_id) if 0 < batch_id < 2**31 else None
        if batch is None or batch.created_by_id != actor.user_id:
            raise NotFoundError("批量发起任务不存在")
        return batch

    def progress(self, batch: StartBatch) -> dict[str, Any]:
        handled = batch.started_count + batch.skipped_count + batch.failed_count
        return {"id": batch.id, "status": batch.status, "status_label": STATUS_LABELS.get(batch.status, batch.status),
                "total": batch.total, "handled": handled, "started": batch.started_count,
                "skipped": batch.skipped_count, "failed": batch.failed_count,
                "percent": round(100 * handled / batch.total) if batch.total else 100,
                "finished": batch.status == "done",
                "results": [{**r, "outcome_label": OUTCOME_LABELS.get(r["outcome"], r["outcome"])}
                            for r in batch.results]}

    def start_next(self, batch_id: int, actor: Actor) -> bool:
        """Handle the batch's next subject in this transaction (its start and its outcome together);
        False when every subject has an outcome (the batch is then marked done)."""
        now = self.clock.now()
        # a write first, always: it locks the row (one runner per batch on PostgreSQL) and opens the
        # transaction, so that under pysqlite the savepoint below nests in it (on its own, the savepoint
        # would be the transaction and its RELEASE would commit the start apart from its outcome)
        self.session.execute(update(StartBatch).where(StartBatch.id == batch_id, StartBatch.status != "done")
                             .values(status="running", started_at=func.coalesce(StartBatch.started_at, now)))
        batch = self.session.get_one(StartBatch, batch_id, populate_existing=True)
        done = {r["subject_id"] for r in batch.results}
        pending = [s for s in batch.subject_ids if s not in done]
        if not pending:
            batch.status, batch.finished_at = "done", now
            self.audit.record("batch_start_done", user_id=actor.user_id, step=f"批量发起 {batch.procedure_code}",
                              detail={"batch_id": batch.id, "started": batch.started_count,
                                      "skipped": batch.skipped_count, "failed": batch.failed_count})
            return False
        subject_id = pending[0]
        subject = self.session.get(Subject, subject_id)
        entry: dict[str, Any] = {"subject_id": subject_id, "name": subject.name if subject else str(subject_id),
                                 "case_id": None, "message": ""}
        try:
            with self.session.begin_nested():  # a refused or failed start leaves nothing of itself
                case = self.starts.start(batch.procedure_code, subject_id, actor)
            entry.update(outcome="started", case_id=case.id, message=f"已发起,案件编号 {case.id}")
            batch.started_count += 1
        except DuplicateCaseError as exc:
            entry.update(outcome="skipped", case_id=exc.case_id, message=str(exc))
            batch.skipped_count += 1
        except XiangFlowError as exc:
            entry.update(outcome="failed", message=_message(exc))
            batch.failed_count += 1
        batch.results = [*batch.results, entry]  # a new list: the JSON column is written
        return True


def run_start_batch(open_work: Callable[[], AbstractContextManager[Any]], batch_id: int) -> str:
    """Work off a queued or interrupted batch, one subject per unit of work (``open_work()`` gives one with
    ``.batch_starts`` and ``.directory``); returns the final status."""
    while True:
        with open_work() as w:
            batch = w.session.get(StartBatch, batch_id)
            if batch is None or batch.status == "done":
                return batch.status if batch else "missing"
            user = w.session.get_one(User, batch.created_by_id)
            if not user.is_active:
                raise ForbiddenError("发起人已停用,批量发起停止")
            if not w.batch_starts.start_next(batch_id, w.directory.actor(user)):
                return "done"


def _message(exc: XiangFlowError) -> str:
    errors = getattr(exc, "errors", None) or {}
    return (";".join(str(v) for v in errors.values()) or str(exc))[:500]


_KIND_NAMES = {"household": "农户", "project": "项目"}



MAX_LIST_BYTES = 2 * 1024 * 1024


def lines_of_upload(file_name: str, data: bytes) -> list[str]:
    """The lines of an uploaded name list: an .xlsx's first column (first sheet), or a .csv/.txt's first
    field per line (UTF-8, or GB18030 as Excel saves Chinese CSV).

    :raises ValidationError: (``file``) too large, an unknown type, or a file that cannot be read.
    """
    if len(data) > MAX_LIST_BYTES:
        raise ValidationError("名单文件过大", {"file": "名单文件不能超过 2 MB"})
    name = (file_name or "").lower()
    if name.endswith(".xlsx"):
        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise ValidationError("名单文件无法读取", {"file": "不是有效的 Excel(.xlsx)文件"}) from exc
        sheet = book.worksheets[0]
        lines = ["" if row[0] is None else str(row[0]) for row in sheet.iter_rows(max_col=1, values_only=True)
                 if row]
        book.close()
    elif name.endswith((".csv", ".txt")):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")
        lines = [line.split(",")[0].strip().strip('"') for line in text.splitlines()]
    else:
        raise ValidationError("名单文件类型不支持", {"file": "请上传 .xlsx、.csv 或 .txt 文件"})
    # a header row (身份证号) is not a subject
    return [line for line in lines if line.strip() and not any(w in line for w in ("身份证", "证件"))]
