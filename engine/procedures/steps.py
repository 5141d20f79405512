"""Step properties, parsed once per task spec: the one typed reading of ``spiffworkflow:properties``.

A BPMN element carries XiangFlow's rules as ``spiffworkflow:property`` entries (``formKey``, ``actions``,
``dueIn`` …). ``properties_of(task_spec)`` parses them into a frozen ``StepProperties`` the first time a
spec is asked and keeps it on the spec object (specs are cached per procedure version, so each is parsed
once per process). Runtime, notices, the studio, the API and the bench read steps through it; the raw
mapping stays available as ``raw`` for the deploy/studio checks, which must see what was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ISSUE_ACTION = "issue"
DEFAULT_ACTIONS = ("approve",)
NO_ATTACHMENTS = "none"
GENERAL_KIND = "file"
SIGNATURE_MODES = ("required", "optional")  # the values of ``signature`` (engine/runtime/signatures.py)

# every property name XiangFlow reads from a step, with what it means (served to the studio's editor)
PROPERTY_NAMES: dict[str, str] = {
    "formKey": "表单",
    "actions": "允许的操作",
    "dueIn": "办理时限",
    "dayKind": "时限按自然日或工作日",
    "dueAt": "办理截止时间(表达式)",
    "caseStatus": "案件状态",
    "outcomeReasonKey": "结果原因字段",
    "noticeKind": "出具的公示公告",
    "signature": "农户签字",
    "signatureLabel": "签字说明",
    "opinionRequired": "必须填写意见",
    "attachments": "允许的附件",
    "assigneeKey": "办理人字段",
    "startsProcedure": "发起的流程",
    "passData": "传递的数据",
    "signMode": "会签方式",
    "batchApproval": "允许批量审批",
    "ccRole": "抄送角色",
    "requiresNotice": "须先出具的公文",
}

_ATTR = "_xf_step_properties"

# a lane names the role that works its tasks: "村级工作专班 (village_cadre)" or the bare code "village_cadre";
# web/assets/src/bpmnlint-plugin-xiangflow/rules/lane-role.js states the same two forms (a test runs both)
ROLE_CODE = r"[a-z][a-z0-9_]{0,39}"
LANE_ROLE_RE = re.compile(rf"^(?:.*?\s*\(({ROLE_CODE})\)|\s*({ROLE_CODE}))\s*$", re.DOTALL)


def role_of_lane(lane_name: str | None) -> str | None:
    """The role code a lane names (``村级工作专班 (village_cadre)`` or ``village_cadre``), or None."""
    match = LANE_ROLE_RE.match(lane_name or "")
    return (match.group(1) or match.group(2)) if match else None


def split_list(raw: str | None) -> tuple[str, ...]:
    """A comma-separated property value as its items (full-width commas too), blanks and repeats dropped."""
    if not raw:
        return ()
    return tuple(dict.fromkeys(item.strip() for item in raw.replace("，", ",").split(",") if item.strip()))


@dataclass(frozen=True)
class StepProperties:
    raw: dict[str, str] = field(default_factory=dict)
    form_key: str | None = None
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    due_in: str | None = None
    due_at: str | None = None
    case_status: str | None = None
    outcome_reason_key: str | None = None
    notice_kind: str | None = None
    signature: str | None = None
    signature_label: str | None = None
    opinion_required: bool = False
    attachments: tuple[str, ...] = (GENERAL_KIND,)
    assignee_key: str | None = None
    starts_procedure: str | None = None
    pass_data: tuple[str, ...] = ()
    sign_mode: str | None = None
    batch_approval: bool = False  # 批量审批: the holder may approve several such tasks with one opinion
    day_kind: str | None = None  # natural or working: how this step's dueIn counts (None: the procedure's setting)
    cc_role: str | None = None  # 抄送: the holders of this role in the case's jurisdiction get a read-only copy
    # a notice kind (notices.json) that must have been issued for the case before the step is approved (退出告知书)
    requires_notice: str | None = None

    @property
    def is_issuance(self) -> bool:
        """An issuance step (出具公示/公告) is completed by issuing its notice, never from the task page."""
        return self.notice_kind is not None

    @classmethod
    def parse(cls, raw: dict[str, str]) -> StepProperties:
        def text(name: str) -> str | None:
            value = raw.get(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        notice_kind = text("noticeKind")
        actions = (ISSUE_ACTION,) if notice_kind else (split_list(raw.get("actions", "approve")) or ())
        attachments_raw = text("attachments")
        if attachments_raw is None:
            attachments: tuple[str, ...] = (GENERAL_KIND,)
        elif attachments_raw == NO_ATTACHMENTS:
            attachments = ()
        else:
            attachments = split_list(attachments_raw)
        return cls(
            raw=dict(raw),
            form_key=text("formKey"),
            actions=actions,
            due_in=text("dueIn"),
            due_at=text("dueAt"),
            case_status=text("caseStatus"),
            outcome_reason_key=text("outcomeReasonKey"),
            notice_kind=notice_kind,
            signature=text("signature"),
            signature_label=text("signatureLabel"),
            opinion_required=(raw.get("opinionRequired") or "").strip().lower() == "true",
            attachments=attachments,
            assignee_key=text("assigneeKey"),
            starts_procedure=text("startsProcedure"),
            pass_data=split_list(raw.get("passData")),
            sign_mode=text("signMode"),
            batch_approval=(raw.get("batchApproval") or "").strip().lower() == "true",
            day_kind=text("dayKind"),
            cc_role=text("ccRole"),
            requires_notice=text("requiresNotice"),
        )


EMPTY = StepProperties()


def raw_properties(task_spec: Any) -> dict[str, str]:
    """A task spec's ``spiffworkflow:properties`` as written ({} when it has none or no spec)."""
    extensions = getattr(task_spec, "extensions", None) or {}
    return extensions.get("properties") or {}


def properties_of(task_spec: Any) -> StepProperties:
    """The parsed properties of a task spec (cached on the spec); EMPTY for None or a spec without any."""
    if task_spec is None:
        return EMPTY
    cached = getattr(task_spec, _ATTR, None)
    if cached is None:
        raw = raw_properties(task_spec)
        cached = StepProperties.parse(raw) if raw else EMPTY
        try:
            setattr(task_spec, _ATTR, cached)
        except AttributeError:  # a spec without a __dict__: parse each time
            pass
    return cached
