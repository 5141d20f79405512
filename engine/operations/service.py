"""Approval operations around a task: claim/unclaim, 转办, 委派, 加签, 抄送, 催办 and attachments.

Operations that change the workflow itself (approve, reject, 退回, 撤回) live in runtime.py;
these only change who holds a task, who may read a case, and what is attached to it.
Every one is recorded in the audit log.

委派 (delegate): the task's holder hands it to someone whose jurisdiction contains the case; the
delegate may only resolve it (opinion + a form draft, 处理完成并交还), then the task is back with its
holder (owner), prefilled, to approve, reject or return. 加签 (add co-signers, anyone whose
jurisdiction contains the case): before (前加签) — the co-signers agree first and the task then
reopens for its holder; after (后加签) — the holder approves now, the decision waits in the task's
``pending`` until every co-signer agrees, and the engine then runs the step with it (runtime.py,
``_co_signer_approved``). A co-signer may approve, reject or return as the step allows; the holder of a
task waiting on co-signers may still reject or return it, which cancels the co-signers' rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import (
    Attachment,
    Case,
    CaseCc,
    CaseStatus,
    Notification,
    TaskRow,
    TaskStatus,
)
from engine.models.audit import AuditLog
from engine.operations.uploads import check_upload
from engine.procedures import forms
from engine.procedures.step_rules import GENERAL_KIND, attachment_kinds, kind_label, missing_opinion_message
from engine.runtime.cases import checked_opinion
from engine.runtime.signatures import SIGNATURE_KIND

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
URGE_INTERVAL = timedelta(hours=1)
MAX_CO_SIGNERS = 10
SIGN_POSITIONS = ("before", "after")


class OperationsService:
    def __init__(self, session: Session, clock, cases, storage_dir: Path):
        self.session = session
        self.clock = clock
        self.cases = cases
        self.access = cases.access  # the one access policy (engine/access/policy.py)
        self.storage_dir = storage_dir
        self.notifications = cases.notifications

    # --------------------------------------------------------------- claim / transfer
    def _open_task_for_holder(self, task_id: int, actor: Actor) -> TaskRow:
        row = self.access.task_of(task_id, actor)
        self.access.check_holder(row, actor)
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
        target = self.access.transfer_recipient(to_username, row, actor, "to")
        row.assignee_id = target.id
        self._audit(row.case, row, actor, "transfer", opinion, {"to": target.username})
        self.notifications.notify([target.id], "task", f"转办给您:{row.title}", f"{actor.display_name}:{opinion or ''}",
                                  case_id=row.case_id, task_id=row.id)

    # --------------------------------------------------------------- 委派 / 加签
    def _task_in_hand(self, task_id: int, actor: Actor) -> TaskRow:
        """The open task the actor holds (may approve now), under the case lock.

        :raises NotFoundError, ConflictError, ForbiddenError: as ``AccessPolicy.check_may_complete``.
        """
        row = self.access.task_of(task_id, actor)
        self.cases.pipeline.lock(row.case_id)
        self.session.refresh(row)
        self.access.check_may_complete(row, actor, "approve")
        if row.parent_task_id is not None:
            raise ForbiddenError("加签人不能再委派或加签")
        return row

    def delegate(self, task_id: int, actor: Actor, to_username: str, opinion: str | None) -> None:
        """委派: hand one's task to someone to work on; it comes back to the actor to decide.

        :raises ForbiddenError: the actor does not hold the task (or it is a co-signer's).
        :raises ValidationError: the delegate is not eligible, or the opinion is too long.
        """
        row = self._task_in_hand(task_id, actor)
        opinion = checked_opinion(opinion)
        target = self.access.recipient(to_username, row.case, actor, "to")
        row.owner_id = actor.user_id
        row.assignee_id = target.id
        row.delegation = "pending"
        row.pending = {k: v for k, v in (row.pending or {}).items() if k != "draft"} or None
        self._audit(row.case, row, actor, "delegate", opinion or None, {"to": target.username})
        self.notifications.notify([target.id], "task", f"委派给您:{row.title}", f"{actor.display_name}:{opinion}",
                                  case_id=row.case_id, task_id=row.id)

    def resolve(self, task_id: int, actor: Actor, opinion: str | None, data: dict | None = None) -> None:
        """处理完成并交还: the delegate gives an opinion and a form draft; the task returns to its owner.

        :raises ConflictError: the task is not (or no longer) delegated.
        :raises ForbiddenError: the actor is not the delegate.
        :raises ValidationError: no opinion.
        """
        row = self.access.task_of(task_id, actor)
        self.cases.pipeline.lock(row.case_id)
        self.session.refresh(row)
        if row.status != TaskStatus.open or row.delegation != "pending":
            raise ConflictError("该任务不在委派处理中")
        if row.assignee_id != actor.user_id:
            raise ForbiddenError("只有被委派人可以处理完成")
        opinion = checked_opinion(opinion, "请填写处理意见")
        draft = self._draft(row, data or {})
        row.assignee_id = row.owner_id
        row.delegation = "resolved"
        row.pending = {**(row.pending or {}), "draft": {
            "by": actor.user_id, "by_name": actor.display_name, "opinion": opinion, "data": draft,
            "at": self.clock.now().isoformat()}}
        self._audit(row.case, row, actor, "resolve", opinion, {"data": draft} if draft else None)
        self.notifications.notify([row.owner_id], "task", f"委派任务已处理完成,请确认:{row.title}",
                                  f"{actor.display_name}:{opinion}", case_id=row.case_id, task_id=row.id)

    def _draft(self, row: TaskRow, data: dict) -> dict:
        """The delegate's draft: only the form's own fields, plain values (the owner's approval validates it)."""
        if not isinstance(data, dict):
            raise ValidationError("data 必须是对象", {"data": "data 必须是对象"})
        schema = self.cases.definitions.form_schema(row.case.version, row.form_key)
        keys = {c["key"] for c in forms.input_components(schema)}
        plain = (str, int, float, bool)
        return {k: v for k, v in data.items() if k in keys and (
            (isinstance(v, plain) and len(str(v)) <= 4000)
            or (isinstance(v, list) and len(v) <= 50 and all(isinstance(i, plain) for i in v)))}

    def add_sign(self, task_id: int, actor: Actor, usernames: list[str], position: str, opinion: str | None,
                 data: dict | None = None) -> list[TaskRow]:
        """加签: add co-signers before (they agree first) or after (the actor approves now with data,
        applied once they all agree) oneself; return the co-signers' new task rows.

        :raises ForbiddenError: the actor does not hold the task (or it is a co-signer's).
        :raises ValidationError: bad position, no or ineligible co-signers, bad form data (after).
        """
        if position not in SIGN_POSITIONS:
            raise ValidationError("加签方式无效", {"position": "只能是 before(前加签)或 after(后加签)"})
        row = self._task_in_hand(task_id, actor)
        names = list(dict.fromkeys(n.strip() for n in usernames if isinstance(n, str) and n.strip()))
        if not names or len(names) > MAX_CO_SIGNERS:
            raise ValidationError("加签人无效", {"to": f"请填写 1 到 {MAX_CO_SIGNERS} 位加签人"})
        users = [self.access.recipient(name, row.case, actor, "to") for name in names]
        # 后加签 holds the holder's decision now: the step's opinion rule is checked now, as for approve
        opinion = checked_opinion(opinion, missing_opinion_message(self.cases.step_properties(row), "approve")
                                  if position == "after" else None)
        diff: dict = {"position": position, "to": names}
        if position == "after":
            if "approve" not in row.actions.split(","):
                raise ValidationError("无法后加签", {"position": "此步骤不能通过,不能后加签"})
            cleaned = self.cases.validated_data(row, data)
            self.cases.check_signed(row)
            row.pending = {**(row.pending or {}), "decision": {
                "action": "approve", "by": actor.user_id, "opinion": opinion, "data": cleaned}}
            diff["data"] = cleaned
        row.status = TaskStatus.waiting
        row.assignee_id = actor.user_id  # it comes back to the one who added the co-signers
        now = self.clock.now()
        children = [TaskRow(
            case_id=row.case_id, spiff_task_id=row.spiff_task_id, spec_name=row.spec_name, title=row.title,
            lane=row.lane, role_code=row.role_code, region_code=row.region_code, scope_code=row.scope_code,
            form_key=row.form_key, actions=row.actions, status=TaskStatus.open, created_at=now, due_at=row.due_at,
            day_kind=row.day_kind, assignee_id=user.id, parent_task_id=row.id, sign_position=position,
            case_title=row.case_title, subject_id=row.subject_id,
        ) for user in users]
        self.session.add_all(children)
        self.session.flush()
        self._audit(row.case, row, actor, "add_sign", opinion or None, diff)
        label = "前加签" if position == "before" else "后加签"
        for child in children:
            self.notifications.notify([child.assignee_id], "task", f"加签({label}):{row.title}",
                                      f"{actor.display_name}:{opinion}", case_id=row.case_id, task_id=child.id)
        return children

    def co_signers(self, row: TaskRow) -> list[TaskRow]:
        """The co-signers' rows added to a task (any round), oldest first."""
        return list(self.session.scalars(select(TaskRow).where(TaskRow.parent_task_id == row.id)
                                         .order_by(TaskRow.id)))

    # --------------------------------------------------------------- 抄送 / 催办
    def cc(self, case_id: int, actor: Actor, usernames: list[str], opinion: str | None = None) -> int:
        """抄送: point users inside the case's jurisdiction to a case; return how many were added.

        :raises NotFoundError: the actor may not see the case.
        :raises ForbiddenError: the actor may read the case but not take part in it.
        :raises ValidationError: no recipient, or one who is unknown, inactive, oneself or outside the case's
            jurisdiction (``AccessPolicy.recipient``); nobody is added.
        """
        case = self.access.visible_case(case_id, actor)
        self.access.check_takes_part(case, actor)
        names = list(dict.fromkeys(n.strip() for n in usernames if isinstance(n, str) and n.strip()))
        if not names:
            raise ValidationError("抄送对象无效", {"to": "请选择抄送对象"})
        users = [self.access.recipient(name, case, actor, "to") for name in names]
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
        row = self.access.task_in_visible_case(task_id, actor)
        self.access.check_takes_part(row.case, actor)
        if row.status != TaskStatus.open:
            raise ConflictError("该任务已被处理")
        if self.access.is_own_todo(row, actor):
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
    def accepted_kinds(self, row: TaskRow) -> list[str]:
        """The attachment kinds the row's step accepts ([] for ``attachments="none"``; engine/procedures/step_rules.py)."""
        return attachment_kinds(self.cases.step_properties(row))

    def add_attachment(self, case_id: int, actor: Actor, file_name: str, content: bytes, content_type: str,
                       task_id: int | None = None, kind: str | None = None) -> Attachment:
        """Attach a file to an open task the actor may act on (of a kind its step accepts), or to the case
        (the starter, while the case runs): checked type and size, stored once by SHA-256, never replaced.

        :raises ConflictError: the case is finished, or the task no longer open.
        :raises ForbiddenError: the actor may not act on the task, or (no task) is not the case's starter.
        :raises ValidationError: the step takes no attachment or not that kind, or the file is too large,
            empty or of a type not allowed (checked on the content); nothing is stored.
        """
        case = self.access.visible_case(case_id, actor)
        if case.status != CaseStatus.running or case.finished_at is not None:
            raise ConflictError("案件已办结,不能再上传附件")
        kind = (kind or "").strip()
        if kind == SIGNATURE_KIND:
            raise ValidationError("签字请在签字板上完成", {"kind": "签字请在任务页的签字板上完成"})
        row = None
        if task_id is None:
            if not self.access.may_attach_to_case(case, actor):
                raise ForbiddenError("只有案件发起人可以上传案件材料;办理中的步骤请在任务页上传")
            if kind not in ("", GENERAL_KIND):
                raise ValidationError("附件类别无效", {"kind": "案件材料只能是一般附件;步骤要求的附件请在任务页上传"})
            kind = GENERAL_KIND
        else:
            row = self.session.get(TaskRow, task_id)
            if row is None or row.case_id != case.id:
                raise ValidationError("任务不属于本案", {"task_id": "任务不属于本案"})
            if row.status != TaskStatus.open:
                raise ConflictError("该任务已被处理,不能再上传附件")
            if not self.access.acts_on(row, actor):
                raise ForbiddenError("您无权办理此任务,不能上传附件")
            kinds = self.accepted_kinds(row)
            if not kinds:
                raise ValidationError("此步骤不接受附件", {"file": f"「{row.title}」不接受附件"})
            if not kind and len(kinds) == 1:
                kind = kinds[0]
            if kind not in kinds:
                raise ValidationError("附件类别无效", {
                    "kind": f"「{row.title}」接受的附件:{'、'.join(kind_label(k) for k in kinds)}"})
        return self.store(case, row, actor, file_name, content, content_type, kind)

    def store(self, case: Case, row: TaskRow | None, actor: Actor, file_name: str, content: bytes,
              content_type: str, kind: str, record: Callable[..., None] | None = None,
              pixels: Callable[[Any], None] | None = None) -> Attachment:
        """Check and store a file the caller has already allowed (add_attachment; signatures keep their rule).

        ``record``: the history of the mutation the file is part of (``Mutation.record``); else written at once.
        ``pixels``: the caller's check of an image's decoded pixels (``uploads.check_upload``).

        :raises ValidationError: too large, empty, or a type not allowed (checked on the content).
        """
        name = re.sub(r"[\\/\x00-\x1f]", "_", (file_name or "").strip())[-200:] or "附件"
        if not content:
            raise ValidationError("附件为空", {"file": "文件为空"})
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise ValidationError("附件过大", {"file": f"文件不能超过 {MAX_ATTACHMENT_BYTES // 1024 // 1024} MB"})
        check_upload(name, content, content_type, pixels)  # decoded and opened, not sniffed (engine/operations/uploads.py)
        digest = hashlib.sha256(content).hexdigest()
        path = self.storage_dir / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        attachment = Attachment(case_id=case.id, task_id=row.id if row else None, uploaded_by_id=actor.user_id,
                                kind=kind, file_name=name, content_type=content_type, size_bytes=len(content),
                                sha256=digest, created_at=self.clock.now())
        self.session.add(attachment)
        self.session.flush()
        detail = {"file": name, "sha256": digest, "kind": kind, "attachment_id": attachment.id}
        if record is not None:
            record("attachment_added", task=row, user_id=actor.user_id, detail=detail)
        else:
            self._audit(case, row, actor, "attachment_added", None, detail)
        return attachment

    def attachments(self, case_id: int) -> list[Attachment]:
        return list(self.session.scalars(select(Attachment).where(Attachment.case_id == case_id)
                                         .order_by(Attachment.id)))

    def read_attachment(self, attachment_id: int, actor: Actor) -> tuple[Attachment, bytes]:
        """An attachment and its bytes, for anyone who may see the case; the hash is re-checked."""
        attachment = self.session.get(Attachment, attachment_id)
        if attachment is None:
            raise NotFoundError("附件不存在")
        self.access.visible_case(attachment.case_id, actor)
        content = (self.storage_dir / attachment.sha256[:2] / attachment.sha256).read_bytes()
        if hashlib.sha256(content).hexdigest() != attachment.sha256:
            raise ConflictError("附件文件已损坏或被篡改")
        return attachment, content

    def _audit(self, case: Case, row: TaskRow | None, actor: Actor, action: str, opinion: str | None = None,
               diff: dict | None = None) -> None:
        AuditLog(self.session, self.clock).record(action, case_id=case.id, task=row, user_id=actor.user_id,
                                                  opinion=opinion, detail=diff)
