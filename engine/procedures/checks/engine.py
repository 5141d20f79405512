"""SpiffWorkflow's own parse of the bundle (its refusals said in Chinese, naming the element), then the
checks that need the parsed spec: every user task in a role's lane, the start in a role's lane."""

from __future__ import annotations

import logging
import re

from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from engine.procedures.checks.bundle import KIND_WORDS, CheckedBundle
from engine.procedures.checks.problem import Problem
from engine.procedures.steps import role_of_lane

log = logging.getLogger(__name__)

# SpiffWorkflow's validation messages (3.2), said in Chinese; {0} … are the pattern's groups
_SPIFF_MESSAGES: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.S), m) for p, m in [
    (r"Element '\{[^}]*\}(\w+)', attribute 'id': '([^']*)' is not a valid value of the atomic type 'xs:ID'",
     "元素 {0} 的 id「{1}」重复或不是有效的 id(字母开头,不含空格)"),
    (r"Element '\{[^}]*\}(\w+)', attribute '(\w+)'", "元素 {0} 的属性 {1} 不符合 BPMN 2.0 规范"),
    (r"Element '\{[^}]*\}(\w+)': This element is not expected", "元素 {0} 不符合 BPMN 2.0 规范:不应出现在此处"),
    (r"Element '\{[^}]*\}(\w+)': Missing child element", "元素 {0} 缺少必需的子元素(BPMN 2.0 规范)"),
    (r"Element '\{[^}]*\}(\w+)'", "元素 {0} 不符合 BPMN 2.0 规范"),
    (r"Element '(\w+)'", "元素 {0} 不符合 BPMN 2.0 规范"),
    (r"No start event found", "缺少开始事件"),
    (r"Process (\S+) is not executable", "流程 {0} 未设为可执行(isExecutable)"),
    (r"no support implemented for this task type", "不支持此类元素"),
    (r"Multiple outgoing flows are not supported", "此元素不能有多条出口连线:请在其后加一个网关"),
    (r"Duplicate process ID", "流程 id 重复"),
    (r"we found two items", "有两个元素使用了同一个 id"),
    (r"Cannot resolve data(Input|Output)Association", "数据关联无法解析:引用的数据对象不存在"),
    (r"Unknown Time Specification|Time Specification Error", "定时事件的时间设置无效"),
    (r"Expected an? (Signal|Message|Error|Escalation) node", "引用的{0}定义不存在"),
    (r"(Signal|Error|Escalation|Correlation) identifier is missing", "{0}定义缺少 id"),
    (r"SubWorkflow Must contain an End event", "子流程缺少结束事件"),
    (r"Cancel Events may only be used with transactions", "取消事件只能用在事务子流程中"),
    (r"loopMaximum or loopCondition", "循环任务必须设置循环条件或最大次数"),
    (r"loop (input|output) data reference is missing", "多实例的输入/输出数据引用不存在"),
    (r"No decisions found", "决策表文件中没有决策"),
    (r"Multiple decision tables", "一个决策只能有一张决策表"),
    (r"Conditional event definition with missing condition", "条件事件缺少条件"),
    # SpiffWorkflow 3.2 fails with a TypeError while reporting a missing signal/message/error definition
    (r"raise_validation_exception\(\) got an unexpected keyword", "事件引用的信号、消息或错误定义不存在"),
]]
_WORDS = {"Signal": "信号", "Message": "消息", "Error": "错误", "Escalation": "升级", "Correlation": "关联",
          "Input": "输入", "Output": "输出", "input": "输入", "output": "输出"}


def _word(group: str) -> str:
    if group in _WORDS:
        return _WORDS[group]
    return f"{KIND_WORDS[group]}({group})" if group in KIND_WORDS else group


def spiff_message(exc: Exception) -> str:
    """What a SpiffWorkflow refusal means, in Chinese (never the exception's class or English text)."""
    text = str(exc)
    for pattern, message in _SPIFF_MESSAGES:
        match = pattern.search(text)
        if match:
            return message.format(*(_word(g) for g in match.groups()))
    return "流程图中有引擎无法识别的结构(可能缺少连线的起点/终点、引用了不存在的元素,或使用了不支持的写法)"


def spiff_parse(b: CheckedBundle) -> list[Problem]:
    """SpiffWorkflow parses the diagram and decisions into a spec (kept on the bundle for deploy)."""
    if b.root is None or b.manifest is None:
        return []
    parser = SpiffBpmnParser(validator=VALIDATOR)
    process_id = b.manifest["process_id"]
    try:
        parser.add_bpmn_xml(b.root, filename=b.bpmn_key)
        for key, dmn_root in b.dmn_roots:
            parser.add_dmn_xml(dmn_root, filename=key)
        b.spec = parser.get_spec(process_id)
        b.subprocess_specs = parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        log.info("SpiffWorkflow refused %s: %s", b.bpmn_key, exc)
        line = getattr(exc, "line_number", None)
        file = getattr(exc, "file_name", None) or b.bpmn_key
        where = f"(第 {line} 行)" if line else ""
        message = spiff_message(exc)
        if str(file).startswith("dmn/"):  # a decision file: its rules are DMN's, not BPMN's
            return [b.problem(getattr(exc, "id", None) or None,
                              f"决策表未通过引擎校验{where}: {message.replace('BPMN 2.0 规范', 'DMN 规范')}", file)]
        return [b.problem(getattr(exc, "id", None) or None, f"流程图未通过引擎校验{where}: {message}", file)]
    except Exception as exc:  # noqa: BLE001 - SpiffWorkflow raises many kinds on malformed models
        log.info("SpiffWorkflow failed on %s: %r", b.bpmn_key, exc)
        return [b.problem(None, f"流程图无法被引擎解析: {spiff_message(exc)}", b.bpmn_key)]
    return []


def user_task_lanes(b: CheckedBundle) -> list[Problem]:
    """Every user task lies in the lane of an existing role (the role that works it)."""
    found = []
    for process in [b.spec, *b.subprocess_specs.values()] if b.spec is not None else []:
        for task_spec in process.task_specs.values():
            if not isinstance(task_spec, UserTask):
                continue
            role = role_of_lane(task_spec.lane)
            if task_spec.lane is None:
                found.append(b.problem(task_spec.bpmn_id, "用户任务必须位于泳道中(泳道名 = 中文名 (角色代码))"))
            elif role not in b.context.known_roles:
                found.append(b.problem(task_spec.bpmn_id, f"所在泳道「{task_spec.lane}」对应的角色 {role!r} 不存在"))
    return found


def start_lane(b: CheckedBundle) -> list[Problem]:
    """The start event lies in a role's lane: that role starts the procedure's cases."""
    if b.spec is None:
        return []
    first = b.spec.start.outputs[0] if b.spec.start.outputs else None
    if first is None or role_of_lane(first.lane) in b.context.known_roles:
        return []
    return [b.problem(first.bpmn_id, "开始事件必须位于某个角色的泳道中(它决定谁可以发起流程)")]
