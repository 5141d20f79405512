"""Approval operations around a task: claim/unclaim, 转办, 抄送, 催办 and attachments.

Operations that change the workflow itself (approve, reject, 退回, 撤回) live in runtime.py;
these only change who holds a task, who may read a case, and what is attached to it.
Every one is recorded in the audit log.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.assignment import Actor
from engine.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import (
    Attachment,
    AuditEvent,
    Case,
    CaseCc,
    Notification,
    TaskRow,
    TaskStatus,
    User,
    UserRole,
)
from engine.notify import NotificationService

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
URGE_INTERVAL = timedelta(hours=1)
READ_ONLY = "抄送给您的案件只能查看,不能办理、抄送或催办"
# type → (extensions, magic-byte check); the content decides, never the name alone
ALLOWED_TYPES = {
    "image/jpeg": ((".jpg", ".jpeg"), lambda b: b.startswith(b"\xff\xd8\xff")),
    "image/png": ((".png",), lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    "application/pdf": ((".pdf",), lambda b: b.startswith(b"%PDF-")),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ((".docx",), lambda b: b[:2] == b"PK"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ((".xlsx",), lambda b: b[:2] == b"PK"),
}


class OperationsService:
    def __init__(self, session: Session, clock, cases, storage_dir: Path):
        self.session = session
        self.clock = clock
        self.cases = cases  # CaseService: visibility rules live there, in one place
        self.storage_dir = storage_dir
        self.notifications = NotificationService(session, clock)

    # --------------------------------------------------------------- claim / transfer
    def _open_task_for_holder(self, task_id: int, actor: Actor) -> TaskRow:
        row = self.cases.get_task(task_id, actor)
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if not actor.holds(row.role_code, row.scope_code):
            raise ForbiddenError("您无权处理此任务")
        return row

    def claim(self, task_id: int, actor: Actor) -> None:
        """Take a group task for oneself, so the others holding the role no longer see it."""
        row = self._open_task_for_holder(task_id, actor)
        if row.assignee_id not in (None, actor.user_id):
            raise ConflictError("该任务已被他人认领")
        row.assignee_id = actor.user_id
        self._audit(row.case, row, actor, "claim")

    def unclaim(self, task_id: int, actor: Actor) -> None:
        row = self._open_task_for_holder(task_id, actor)
        if row.assignee_id != actor.user_id:
            raise ConflictError("您没有认领该任务")
        row.assignee_id = None
        self._audit(row.case, row, actor, "unclaim")

    def transfer(self, task_id: int, actor: Actor, to_username: str, opinion: str | None) -> None:
        """转办: hand a task to another person holding the same role in the same jurisdiction."""
        row = self._open_task_for_holder(task_id, actor)
        if row.assignee_id not in (None, actor.user_id):
            raise ForbiddenError("该任务已由他人认领")
        target = self.session.scalar(select(User).where(User.username == to_username, User.is_active.is_(True)))
        holds = target is not None and self.session.scalar(select(func.count(UserRole.id)).where(
            UserRole.user_id == target.id, UserRole.role_code == row.role_code,
            UserRole.region_code == row.scope_code))
        if not holds:
            raise ValidationError("无法转办", {"to": "只能转办给本辖区同一岗位的人员"})
        if target.id == actor.user_id:
            raise ValidationError("无法转办", {"to": "不能转办给自己"})
        row.assignee_id = target.id
        self._audit(row.case, row, actor, "transfer", opinion, {"to": target.username})
        self.notifications.notify([target.id], "task", f"转办给您:{row.title}", f"{actor.display_name}:{opinion or ''}",
                                  case_id=row.case_id, task_id=row.id)

    # --------------------------------------------------------------- 抄送 / 催办
    def cc(self, case_id: int, actor: Actor, usernames: list[str], opinion: str | None = None) -> int:
        """抄送: give users a read-only view of a case; return how many were added."""
        case = self.cases.get_case(case_id, actor)
        if not self.cases.takes_part(case, actor):
            raise ForbiddenError(READ_ONLY)
        users = self.session.scalars(select(User).where(User.username.in_(usernames), User.is_active.is_(True))).all()
        missing = set(usernames) - {u.username for u in users}
        if missing or not usernames:
            raise ValidationError("抄送对象无效", {"to": f"用户不存在: {'、'.join(sorted(missing)) or '未选择'}"})
        added = 0
        for user in users:
            exists = self.session.scalar(select(CaseCc.id).where(CaseCc.case_id == case.id, CaseCc.user_id == user.id))
            if exists is None:
                self.session.add(CaseCc(case_id=case.id, user_id=user.id, by_user_id=actor.user_id,
                                        created_at=self.clock.now()))
                added += 1
        self.session.flush()
        self.notifications.notify([u.id for u in users], "cc", f"抄送:{case.title}", opinion or "", case_id=case.id)
        self._audit(case, None, actor, "cc", opinion, {"to": sorted(u.username for u in users)})
        return added

    def urge(self, task_id: int, actor: Actor, opinion: str | None = None) -> int:
        """催办: remind the holders of an open task; the starter or anyone above the case may urge,
        at most once per task per hour. Returns how many people were told."""
        row = self.session.get(TaskRow, task_id)
        if row is None or not self.cases.may_view_case(row.case, actor):
            raise NotFoundError("任务不存在")
        if not self.cases.takes_part(row.case, actor):
            raise ForbiddenError(READ_ONLY)
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if actor.holds(row.role_code, row.scope_code):
            raise ValidationError("无需催办", {"task": "这是您自己的待办"})
        since = self.clock.now() - URGE_INTERVAL
        recent = self.session.scalar(select(func.count(Notification.id)).where(
            Notification.task_id == row.id, Notification.kind == "urge", Notification.created_at > since))
        if recent:
            raise ConflictError("一小时内已催办过,请稍后再试")
        users = [row.assignee_id] if row.assignee_id else self.notifications.holders(row.role_code, row.scope_code)
        told = self.notifications.notify(users, "urge", f"催办:{row.title}",
                                         f"{actor.display_name}:{opinion or '请尽快办理'}", case_id=row.case_id,
                                         task_id=row.id)
        self._audit(row.case, row, actor, "urge", opinion)
        return told

    # --------------------------------------------------------------- attachments
    def add_attachment(self, case_id: int, actor: Actor, file_name: str, content: bytes, content_type: str,
                       task_id: int | None = None, kind: str = "file") -> Attachment:
        """Attach a file to a case: checked type and size, stored once by SHA-256, never replaced.

        :raises ValidationError: too large, empty, or a type not allowed (checked on the content).
        :raises ForbiddenError: the actor is not working on the case.
        """
        case = self.cases.get_case(case_id, actor)
        if not self._works_on(case, actor):
            raise ForbiddenError("只有办理本案的人员可以上传附件")
        name = re.sub(r"[\\/\x00-\x1f]", "_", (file_name or "").strip())[-200:] or "附件"
        if not content:
            raise ValidationError("附件为空", {"file": "文件为空"})
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise ValidationError("附件过大", {"file": f"文件不能超过 {MAX_ATTACHMENT_BYTES // 1024 // 1024} MB"})
        allowed = ALLOWED_TYPES.get(content_type)
        if allowed is None or not name.lower().endswith(allowed[0]) or not allowed[1](content):
            raise ValidationError("附件类型不允许", {"file": "只接受 JPG、PNG、PDF、DOCX、XLSX 文件"})
        digest = hashlib.sha256(content).hexdigest()
        path = self.storage_dir / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        attachment = Attachment(case_id=case.id, task_id=task_id, uploaded_by_id=actor.user_id, kind=kind,
                                file_name=name, content_type=content_type, size_bytes=len(content), sha256=digest,
                                created_at=self.clock.now())
        self.session.add(attachment)
        self.session.flush()
        self._audit(case, None, actor, "attachment_added", None, {"file": name, "sha256": digest, "kind": kind})
        return attachment

    def attachments(self, case_id: int) -> list[Attachment]:
        return list(self.session.scalars(select(Attachment).where(Attachment.case_id == case_id)
                                         .order_by(Attachment.id)))

    def read_attachment(self, attachment_id: int, actor: Actor) -> tuple[Attachment, bytes]:
        """An attachment and its bytes, for anyone who may see the case; the hash is re-checked."""
        attachment = self.session.get(Attachment, attachment_id)
        if attachment is None:
            raise NotFoundError("附件不存在")
        self.cases.get_case(attachment.case_id, actor)
        content = (self.storage_dir / attachment.sha256[:2] / attachment.sha256).read_bytes()
        if hashlib.sha256(content).hexdigest() != attachment.sha256:
            raise ConflictError("附件文件已损坏或被篡改")
        return attachment, content

    def _works_on(self, case: Case, actor: Actor) -> bool:
        if case.started_by_id == actor.user_id:
            return True
        rows = self.session.scalars(select(TaskRow).where(TaskRow.case_id == case.id)).all()
        return any(actor.holds(r.role_code, r.scope_code) or r.completed_by_id == actor.user_id for r in rows)

    def _audit(self, case: Case, row: TaskRow | None, actor: Actor, action: str, opinion: str | None = None,
               diff: dict | None = None) -> None:
        self.session.add(AuditEvent(case_id=case.id, task_id=row.id if row else None, user_id=actor.user_id,
                                    action=action, step=row.title if row else None, opinion=opinion,
                                    data_diff=diff, created_at=self.clock.now()))
        self.session.flush()
