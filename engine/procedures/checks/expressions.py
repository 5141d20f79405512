"""Expressions and scripts: gateway conditions, timers, due dates, 会签 completion conditions and scripts
pass the safe evaluator, read only names the procedure defines, and timers evaluate to a time."""

from __future__ import annotations

import ast

from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine.core import clock as clock_mod
from engine.core.errors import UnsafeExpressionError
from engine.procedures.checks.bundle import NS, SPIFF_NS, CheckedBundle, local, q
from engine.procedures.checks.problem import Problem
from engine.procedures.expressions import SAFE_FUNCTIONS, check_expression, evaluate, parse_script

TIMER_TAGS = {"timeDuration": "定时时长", "timeDate": "定时日期", "timeCycle": "定时周期"}
TIMER_HINTS = {"timeDuration": "时长,如 \"P15D\"(注意加引号)",
               "timeDate": "日期时间,如 workdays(10) 或 date_add(some_date, 15)",
               "timeCycle": "重复周期,如 \"R/P1M\""}


def names_in(expression: str) -> set[str]:
    """The variable names an expression reads (not the safe functions it calls)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return set()
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - (called & set(SAFE_FUNCTIONS)) - {
        "True", "False", "None"}


def _expression(b: CheckedBundle, element_id: str | None, text: str, what: str, read_names: bool = True) -> list[Problem]:
    if text.strip().startswith(("${", "#{")):  # a diagram made for Camunda, Flowable or Activiti (JUEL)
        return [b.problem(element_id, f"{what}使用了 Camunda/Flowable 的 ${{…}} 写法:XiangFlow 直接写表达式,"
                                      "如 approved == True 或 family_size >= 5")]
    try:
        check_expression(text)
    except UnsafeExpressionError as exc:
        return [b.problem(element_id, f"{what}不安全或有语法错误: {exc}")]
    if read_names and b.context.passed_in is not None:  # names passed in by other procedures are known
        unknown = sorted(n for n in names_in(text) if not b.data_names.known(n))
        if unknown:
            return [b.problem(element_id, f"{what}引用了未定义的变量 {', '.join(unknown)}"
                                          "(表单字段、决策表输出、脚本变量或 settings 中都没有)")]
    return []


def _owner(node: etree._Element) -> etree._Element | None:
    while node is not None and not node.get("id"):
        node = node.getparent()
    return node


def conditions(b: CheckedBundle) -> list[Problem]:
    """A sequence flow's condition is not empty, is safe and reads known names."""
    if b.process is None:
        return []
    found = []
    for flow in b.process.iter(q("sequenceFlow")):
        cond = flow.find(q("conditionExpression"))
        if cond is None:
            continue
        if not (cond.text or "").strip():
            found.append(b.problem(flow.get("id"), "条件表达式是空的"))
        else:
            found += _expression(b, flow.get("id"), cond.text, "条件表达式")
    return found


def due_dates(b: CheckedBundle) -> list[Problem]:
    """A user task's dueAt expression is safe."""
    return [p for n in b.elements() if (due_at := b.properties(n).due_at)
            for p in _expression(b, n.get("id"), due_at, "办理期限表达式", read_names=False)]


def _timer(b: CheckedBundle, element_id: str | None, tag: str, text: str) -> list[Problem]:
    what = TIMER_TAGS[tag]
    if not text:
        return [b.problem(element_id, f"{what}表达式是空的")]
    problems = _expression(b, element_id, text, f"{what}表达式")
    if problems:
        return problems
    names = b.data_names
    if any(n in names.run_time for n in names_in(text)):
        return []  # reads a DMN output or script variable: its value is only known when the case runs
    if b.context.passed_in is None and any(not names.known(n) for n in names_in(text)):
        return []  # may read data other procedures pass in, which is not known here
    try:
        with clock_mod.using(b.context.clock or clock_mod.current()):
            value = str(evaluate(text, dict(names.values)))
        if tag == "timeDuration":
            parsed = TimerEventDefinition.parse_iso_duration(value)
            if not any(parsed.values()):
                raise ValueError(value)
        elif tag == "timeDate":
            TimerEventDefinition.get_datetime(value)
        else:
            TimerEventDefinition.parse_iso_recurring_interval(value)
    except Exception:  # noqa: BLE001 - the timer would fail at run time the same way
        return [b.problem(element_id, f"{what}表达式 {text!r} 无法求值为{TIMER_HINTS[tag]}")]
    return []


def timers(b: CheckedBundle) -> list[Problem]:
    """A timer event has a time expression that is safe and evaluates to a duration, date or cycle."""
    if b.process is None:
        return []
    found = []
    for tag in TIMER_TAGS:
        for node in b.process.iter(q(tag)):
            owner = node.getparent().getparent()
            found += _timer(b, owner.get("id"), tag, (node.text or "").strip())
    for node in b.process.iter(q("timerEventDefinition")):
        if not any(node.find(q(t)) is not None for t in TIMER_TAGS):
            found.append(b.problem(node.getparent().get("id"), "定时事件没有设置时间表达式"))
    return found


def multi_instance_problem(loop: etree._Element) -> str | None:
    """Why a user task's multiInstanceLoopCharacteristics cannot run as a 会签/或签, or None.

    Each instance is one signer's task row: the signers come from a collection
    (``loopDataInputRef``, e.g. ``role_members(...)`` in the preScript or a form's list of
    usernames) and each instance's signer is its ``inputDataItem``.
    """
    if loop.getparent() is None or local(loop.getparent()) != "userTask":
        return None
    if loop.find("bpmn:loopCardinality", NS) is not None:
        return "会签/或签不能用 loopCardinality:请用 loopDataInputRef 指定会签人员名单"
    if not (getattr(loop.find("bpmn:loopDataInputRef", NS), "text", "") or "").strip():
        return "会签/或签必须用 loopDataInputRef 指定会签人员名单(用户名列表)"
    if loop.find("bpmn:inputDataItem", NS) is None:
        return "会签/或签必须有 inputDataItem(每个实例的会签人)"
    return None


def countersigns(b: CheckedBundle) -> list[Problem]:
    """A 会签/或签 names its signers' list and signer item; its completion condition is safe."""
    if b.process is None:
        return []
    found = []
    for loop in b.process.iter(q("multiInstanceLoopCharacteristics")):
        owner = loop.getparent()
        if problem := multi_instance_problem(loop):
            found.append(b.problem(owner.get("id"), problem))
        cond = loop.find(q("completionCondition"))
        if cond is not None and (cond.text or "").strip():
            found += _expression(b, owner.get("id"), cond.text, "会签完成条件")
    return found


def scripts(b: CheckedBundle) -> list[Problem]:
    """Script tasks and pre/post scripts are lines of ``name = expression`` the safe evaluator allows."""
    if b.process is None:
        return []
    found = []
    nodes = [*b.process.iter(q("script")), *(n for tag in ("preScript", "postScript") for n in b.process.iter(q(tag, SPIFF_NS)))]
    for node in nodes:
        try:
            parse_script(node.text or "")
        except UnsafeExpressionError as exc:
            owner = _owner(node)
            found.append(b.problem(owner.get("id") if owner is not None else None, f"脚本不被允许: {exc}"))
    return found
