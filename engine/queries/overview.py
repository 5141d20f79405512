"""The case at a glance, for the task page and its API: what the earlier steps recorded, in words.

A reviewer (镇复核, 部门审定, 会签, 补助兑付 …) decides on what the steps before theirs submitted. This read
model gives, per completed step in order, who did what when with which opinion, the step's form fields by
label with their values in words (an option's label, not its value; 是/否; ID numbers masked unless the
reader may see them), and the attachments and signature the step holds. Nothing is deserialized: it reads
task rows, the version's form files and attachment rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.core.glossary import ACTION_LABELS
from engine.models import Attachment, AuditEvent, Case, TaskRow, TaskStatus, User
from engine.procedures.definitions import DefinitionService, safe_xml
from engine.procedures.forms import input_components, mask_id
from engine.runtime.signatures import SIGNATURE_KIND

IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class FieldValue:
    key: str
    label: str
    text: str


@dataclass
class StepRecord:
    """One completed step of the case as the reviewer sees it."""

    task_id: int
    title: str
    action: str
    action_label: str
    by: str
    at: Any
    opinion: str | None
    fields: list[FieldValue] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    signature: Attachment | None = None
    notice_serial: str | None = None  # an issuance step (出具公示/公告): the notice it issued

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "title": self.title, "action": self.action, "action_label": self.action_label,
            "by": self.by, "at": self.at.isoformat() if self.at else None, "opinion": self.opinion,
            "fields": [{"key": f.key, "label": f.label, "value": f.text} for f in self.fields],
            "attachments": [{"id": a.id, "file_name": a.file_name, "kind": a.kind, "content_type": a.content_type}
                            for a in self.attachments],
            "signature": {"id": self.signature.id} if self.signature else None,
            "notice_serial": self.notice_serial,
        }


def value_text(component: dict[str, Any], value: Any, show_full_id: bool) -> str:
    """A submitted value as a reader should see it: option labels, 是/否, masked ID numbers."""
    if value is None or value == "" or value == []:
        return "—"
    options = {str(o.get("value")): str(o.get("label") or o.get("value")) for o in component.get("values") or []
               if isinstance(o, dict)}
    kind = component.get("type")
    if kind == "checkbox" or isinstance(value, bool):
        return "是" if value in (True, "true") else "否"
    if kind == "checklist" and isinstance(value, list):
        return "、".join(options.get(str(v), str(v)) for v in value)
    if options:
        return options.get(str(value), str(value))
    if (component.get("properties") or {}).get("format") == "cn_id" and not show_full_id:
        return mask_id(str(value))
    return str(value)


class CaseOverview:
    """Read model of a case's completed steps (the task page shows it above the step's own form)."""

    def __init__(self, session: Session, definitions: DefinitionService):
        self.session = session
        self.definitions = definitions

    def steps(self, case: Case, tasks: list[TaskRow], show_full_id: bool,
              before: TaskRow | None = None) -> list[StepRecord]:
        """The case's completed steps in the order they were done (those done before ``before`` when given:
        the steps a task's holder reviews), each with its fields in words, attachments and signature."""
        done = [t for t in tasks if t.status == TaskStatus.completed and t.action not in (None, "withdraw")
                and (before is None or t.id != before.id)]
        done.sort(key=lambda t: (t.completed_at is None, t.completed_at, t.id))
        attachments: dict[int | None, list[Attachment]] = {}
        for att in self.session.scalars(select(Attachment).where(Attachment.case_id == case.id).order_by(Attachment.id)):
            attachments.setdefault(att.task_id, []).append(att)
        schemas: dict[str | None, list[dict[str, Any]]] = {}
        records = []
        for row in done:
            if row.form_key not in schemas:
                schemas[row.form_key] = input_components(self.definitions.form_schema(case.version, row.form_key))
            data = row.data or {}
            fields = [FieldValue(c["key"], c.get("label") or c["key"], value_text(c, data.get(c["key"]), show_full_id))
                      for c in schemas[row.form_key] if c.get("key") in data]
            own = attachments.get(row.id, [])
            signatures = [a for a in own if a.kind == SIGNATURE_KIND]
            records.append(StepRecord(
                task_id=row.id, title=row.title, action=row.action or "",
                action_label=ACTION_LABELS.get("vote_reject" if row.action == "reject" and row.instance_group
                                               else row.action or "", row.action or ""),
                by=row.completed_by.display_name if row.completed_by else "系统", at=row.completed_at,
                opinion=row.opinion, fields=fields, attachments=[a for a in own if a.kind != SIGNATURE_KIND],
                signature=signatures[-1] if signatures else None,
                notice_serial=str(data["notice_serial"]) if row.action == "issue" and data.get("notice_serial") else None))
        return records

    def case_files(self, case: Case) -> list[Attachment]:
        """Attachments of the case itself (not of a step), e.g. the starter's materials."""
        return list(self.session.scalars(select(Attachment).where(
            Attachment.case_id == case.id, Attachment.task_id.is_(None)).order_by(Attachment.id)))

    def task_files(self, row: TaskRow) -> list[Attachment]:
        """What was attached to this task so far (signatures apart: the pad shows them)."""
        return list(self.session.scalars(select(Attachment).where(
            Attachment.task_id == row.id, Attachment.kind != SIGNATURE_KIND).order_by(Attachment.id)))

    def decision_words(self, case: Case, computed: dict[str, Any]) -> list[tuple[str, str]]:
        """What the diagram decided (DMN results), by the decision tables' own output labels and in words:
        a code with a ``<code>_name`` output beside it shows that name; values no table labels (the engine's
        own bookkeeping, e.g. a notice serial) are not shown."""
        labels = self._dmn_labels(case)
        words = []
        for key, value in computed.items():
            if key not in labels or (key.endswith("_name") and key.removesuffix("_name") in labels):
                continue
            shown = computed.get(f"{key}_name", value)
            text = "是" if shown is True else "否" if shown is False else str(shown)
            words.append((labels[key], text))
        return words

    def _dmn_labels(self, case: Case) -> dict[str, str]:
        labels: dict[str, str] = {}
        for name, text in DefinitionService.files(case.version).items():
            if not name.startswith("dmn/"):
                continue
            root = safe_xml(text, name)
            for output in root.iter("{*}output"):
                if output.get("name") and output.get("label"):
                    labels.setdefault(output.get("name"), output.get("label"))
        return labels

    def history_notes(self, events: list[AuditEvent]) -> dict[int, str]:
        """Per history event, what it was about in words: the timer that fired (公示期满), the people a
        抄送/转办/委派/加签 went to by name (the record keeps usernames; one query for all of them)."""
        names: set[str] = set()
        for e in events:
            to = (e.data_diff or {}).get("to") if isinstance(e.data_diff, dict) else None
            names.update([to] if isinstance(to, str) else [n for n in to or [] if isinstance(n, str)])
        shown: dict[str, str] = {}
        if names:
            shown = {u: d for u, d in self.session.execute(select(User.username, User.display_name).where(
                User.username.in_(sorted(names)))).tuples()}
        notes = {}
        for e in events:
            detail = e.data_diff if isinstance(e.data_diff, dict) else {}
            if e.action == "timer_fired" and detail.get("timer"):
                notes[e.id] = f"「{detail['timer']}」"
            elif e.action in ("cc", "transfer", "delegate", "add_sign") and detail.get("to"):
                to = detail["to"] if isinstance(detail["to"], list) else [detail["to"]]
                people = "、".join(shown.get(n) or n for n in to if isinstance(n, str))
                notes[e.id] = {"cc": "抄送给 ", "transfer": "转给 ", "delegate": "委派给 "}.get(e.action, "加签人 ") + people
        return notes

    @staticmethod
    def is_image(attachment: Attachment) -> bool:
        return attachment.content_type in IMAGE_TYPES
