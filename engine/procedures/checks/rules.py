"""The constants the procedure checks share with the rest of the engine: one statement of each rule.

Other layers import these names (the runtime refuses the same reserved data keys, the studio and
``bundle_from_files`` the same procedure codes); nothing restates them.
"""

from __future__ import annotations

import re

from engine.core.glossary import ACTION_LABELS
from engine.models import CaseStatus

# a procedure's code: procedure.json, the studio's new/copy forms, a zip's manifest
PROCEDURE_CODE_RE = re.compile(r"[a-z][a-z0-9_]{1,63}")
PROCEDURE_CODE_RULE = "流程代码只能是小写字母开头的字母、数字、下划线(2–64 位)"
# a data key a case may carry from outside its forms: start_data, passData, a dry run's sample
DATA_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

ALLOWED_ACTIONS = ("approve", "reject", "return")
ACTION_WORDS = {a: ACTION_LABELS[a] for a in ALLOWED_ACTIONS}  # 通过, 不通过, 退回 (engine/core/glossary.py)
SUBJECT_KINDS = ("household", "project")
DAY_KINDS = ("natural", "working")
CASE_STATUS_VALUES = tuple(s.value for s in CaseStatus)

# the data keys the engine puts into every case (engine/runtime), with the value a trial evaluation
# of an expression uses for each: a form field, start data or a sample may not take these names
ENGINE_DATA_SAMPLE: dict[str, object] = {
    "case_id": 1, "subject_name": "x", "subject_kind": "household", "region_code": "510921107001",
    "region_name": "x", "settings": {}, "decision": "approve", "opinions": {}, "last_opinion": "",
    "return_reason": "", "returned_from": "", "last_event_reason": "", "linked_from_case": 1,
    "linked_from_title": "x",
}
RESERVED_DATA_KEYS = frozenset(ENGINE_DATA_SAMPLE)
RESERVED_DATA_PREFIXES = ("subject_",)
# what a 会签/或签 step's votes add to its data (engine/runtime/countersign.py)
TALLY_KEYS = ("nr_of_instances", "nr_of_completed_instances", "nr_of_approvals", "nr_of_rejections")


def is_reserved_data_key(key: str) -> bool:
    """Whether a data key belongs to the engine (a form, start data or sample may not use it)."""
    return key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES)


FLOW_NODE_TAGS = frozenset({
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "task", "userTask", "manualTask", "scriptTask", "businessRuleTask", "serviceTask", "sendTask",
    "receiveTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
})
UNSUPPORTED_TAGS = {
    "serviceTask": "不支持服务任务(XiangFlow 不调用外部服务)",
    "sendTask": "不支持发送任务",
    "receiveTask": "不支持接收任务",
    "eventBasedGateway": "不支持事件网关:请改用子流程加边界信号事件(公示异议的做法)",
    "complexGateway": "不支持复杂网关",
    "callActivity": "不支持调用活动:请用 startsProcedure 发起关联流程",
    "adHocSubProcess": "不支持自由子流程",
    "transaction": "不支持事务子流程",
}


def editor_vocabulary() -> dict[str, object]:
    """What the studio's property panel shows and checks as you type, served with the editor page so the
    JS holds no copy: step property names and labels, actions, case statuses, attachment limits, lanes."""
    from engine.core.glossary import CASE_STATUS_LABELS
    from engine.procedures import step_rules
    from engine.procedures.steps import LANE_ROLE_RE, PROPERTY_NAMES

    return {
        "properties": dict(PROPERTY_NAMES),
        "actions": [[a, ACTION_WORDS[a]] for a in ALLOWED_ACTIONS],
        "caseStatuses": [[s, CASE_STATUS_LABELS.get(s, s)] for s in CASE_STATUS_VALUES],
        "attachments": {"none": step_rules.NO_ATTACHMENTS, "reserved": list(step_rules.RESERVED_KINDS),
                        "maxLength": step_rules.MAX_KIND_LENGTH, "maxKinds": step_rules.MAX_KINDS},
        "lanePattern": LANE_ROLE_RE.pattern,
    }
