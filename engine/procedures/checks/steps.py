"""Step properties (``spiffworkflow:properties``, read through engine/procedures/steps.py): a user task's
form, actions, time limit, opinion and attachment rules, signature, notice; any element's case status and
linked procedure."""

from __future__ import annotations

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine.procedures.checks.bundle import CheckedBundle, local
from engine.procedures.checks.files import FORM_KEY_RE
from engine.procedures.checks.problem import Problem
from engine.procedures.checks.rules import ACTION_WORDS, ALLOWED_ACTIONS, CASE_STATUS_VALUES, DATA_KEY_RE, DAY_KINDS
from engine.procedures.step_rules import step_rule_problems
from engine.procedures.steps import SIGNATURE_MODES


def _user_tasks(b: CheckedBundle):
    return [n for n in b.elements() if local(n) == "userTask"]


def user_task_forms(b: CheckedBundle) -> list[Problem]:
    """A user task names a form (formKey) the bundle holds."""
    found = []
    for node in _user_tasks(b):
        form_key = b.properties(node).form_key
        if not form_key:
            found.append(b.problem(node.get("id"), "用户任务没有选择表单(formKey)"))
        elif not FORM_KEY_RE.fullmatch(form_key) or form_key not in b.forms:
            found.append(b.problem(node.get("id"), f"表单 {form_key!r} 不存在或无效"))
    return found


def user_task_actions(b: CheckedBundle) -> list[Problem]:
    """A user task allows some of 通过/不通过/退回 (approve, reject, return) and nothing else; an issuance
    step's one action is issuing its notice."""
    found = []
    allowed = "、".join(f"{ACTION_WORDS[a]}({a})" for a in ALLOWED_ACTIONS)
    for node in _user_tasks(b):
        props = b.properties(node)
        if props.is_issuance:
            continue
        bad = [a for a in props.actions if a not in ALLOWED_ACTIONS]
        if bad or not props.actions:
            found.append(b.problem(node.get("id"), f"不允许的操作 {','.join(bad) or '(空)'}:只能是 {allowed}"))
    return found


def user_task_time_limits(b: CheckedBundle) -> list[Problem]:
    """dueIn is an ISO duration (P5D)."""
    found = []
    for node in _user_tasks(b):
        due_in = b.properties(node).due_in
        if not due_in:
            continue
        try:
            parsed = TimerEventDefinition.parse_iso_duration(due_in)
            if not parsed or not any(parsed.values()):
                raise ValueError(due_in)
        except Exception:  # noqa: BLE001 - any parse failure is the same problem
            found.append(b.problem(node.get("id"), f"办理时限 dueIn {due_in!r} 不是有效的时长(如 P5D 表示 5 天)"))
    return found


def user_task_rules(b: CheckedBundle) -> list[Problem]:
    """opinionRequired, attachments, batchApproval and signature take allowed values
    (engine/procedures/step_rules.py)."""
    found = []
    for node in _user_tasks(b):
        props = b.properties(node)
        found += [b.problem(node.get("id"), why) for why in step_rule_problems(props.raw)]
        batch = props.raw.get("batchApproval")
        if batch is not None and batch.strip().lower() not in ("true", "false"):
            found.append(b.problem(node.get("id"), f"batchApproval(允许批量审批)只能是 true 或 false(现为 {batch!r})"))
        if "signature" in props.raw and props.signature not in SIGNATURE_MODES:
            found.append(b.problem(node.get("id"), f"signature 只能是 {' 或 '.join(SIGNATURE_MODES)}"))
        if "dayKind" in props.raw and props.day_kind not in DAY_KINDS:
            found.append(b.problem(node.get("id"), "dayKind(时限计算方式)只能是 natural(自然日)或 working(工作日)"))
    return found


def cc_roles(b: CheckedBundle) -> list[Problem]:
    """ccRole (抄送) names an existing role."""
    return [b.problem(n.get("id"), f"抄送角色 {b.properties(n).cc_role!r} 不存在")
            for n in b.elements() if "ccRole" in b.properties(n).raw
            and b.properties(n).cc_role not in b.context.known_roles]


def declared_notice_kinds(files: dict[str, str]) -> set[str]:
    """The notice kinds a bundle's ``notices.json`` declares (none without one, or when it is malformed)."""
    return set(_declared_kinds(files))


def _declared_kinds(files: dict[str, str]) -> dict[str, dict]:
    """The kinds a bundle's ``notices.json`` declares, by code, as written ({} without one or when malformed)."""
    import json

    from engine.procedures.notice_catalog import NOTICES_FILE

    try:
        kinds = json.loads(files.get(NOTICES_FILE) or "{}").get("kinds", [])
    except (ValueError, AttributeError):
        return {}
    if not isinstance(kinds, list):
        return {}
    return {str(k["code"]): k for k in kinds if isinstance(k, dict) and k.get("code")}


def required_notices(b: CheckedBundle) -> list[Problem]:
    """A user task's requiresNotice names a kind notices.json declares as due at that step (``due.open_steps``):
    otherwise nobody could issue it there and the step could never be approved."""
    declared = _declared_kinds(b.files)
    found = []
    for node in _user_tasks(b):
        kind = b.properties(node).requires_notice
        if kind is None:
            continue
        due = (declared.get(kind) or {}).get("due")
        open_steps = due.get("open_steps") if isinstance(due, dict) else None
        if kind not in declared:
            found.append(b.problem(node.get("id"), f"须先出具的公文 {kind!r} 未在 notices.json 中声明"))
        elif not isinstance(open_steps, list) or node.get("id") not in open_steps:
            found.append(b.problem(node.get("id"), f"须先出具的公文 {kind!r} 在 notices.json 中未把本步骤列为出具时机"
                                                   f"(due.open_steps),本步骤将无法办理"))
    return found


def notice_kinds(b: CheckedBundle) -> list[Problem]:
    """An issuance step's noticeKind is declared in the bundle's notices.json."""
    declared = declared_notice_kinds(b.files)
    return [b.problem(n.get("id"), f"通知模板 {b.properties(n).notice_kind!r} 未在 notices.json 中声明")
            for n in b.elements() if b.properties(n).is_issuance and b.properties(n).notice_kind not in declared]


def case_statuses(b: CheckedBundle) -> list[Problem]:
    """caseStatus is one of the case statuses."""
    return [b.problem(n.get("id"), f"案件状态 {b.properties(n).case_status!r} 无效(可选: {', '.join(CASE_STATUS_VALUES)})")
            for n in b.elements() if b.properties(n).case_status not in (None, *CASE_STATUS_VALUES)]


def linked_procedures(b: CheckedBundle) -> list[Problem]:
    """startsProcedure names a procedure this one's cases may start; passData lists plain field names."""
    found = []
    own = (b.manifest or {}).get("code")
    known, linkable = b.context.known_procedures, b.context.linkable
    for node in b.elements():
        props = b.properties(node)
        code = props.starts_procedure
        if not code:
            continue
        if known is not None and code not in known and code != own:
            found.append(b.problem(node.get("id"), f"要发起的流程 {code!r} 不存在"))
        elif linkable is not None and code not in linkable and code != own:
            found.append(b.problem(node.get("id"), f"要发起的流程 {code!r} 属于其他地区,本流程的案件不能发起它"))
        found += [b.problem(node.get("id"), f"passData 中的字段名 {key!r} 无效") for key in props.pass_data
                  if not DATA_KEY_RE.fullmatch(key)]
    return found
