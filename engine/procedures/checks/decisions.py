"""Decision tables (DMN): unique decision ids, safe input expressions and entries; business rule tasks
name a decision of the bundle."""

from __future__ import annotations

from lxml import etree

from engine.core.errors import UnsafeExpressionError
from engine.procedures.checks.bundle import SPIFF_NS, CheckedBundle, local, q
from engine.procedures.checks.problem import Problem
from engine.procedures.expressions import check_expression


def dmn_entry_problem(text: str) -> str | None:
    """Why a DMN input/output entry is not allowed, or None.

    An entry is either a whole expression ("低保", 6500) or a test completing ``input <entry>``
    (``< 6500``); ``?`` stands for the input value, as SpiffWorkflow's DMN engine reads it.
    """
    text = text.strip()
    if not text or text == "-":
        return None
    errors = []
    for candidate in (text.replace("?", "dmninputexpr"), f"v {text}"):
        try:
            check_expression(candidate)
            return None
        except UnsafeExpressionError as exc:
            errors.append(str(exc))
    return errors[0]


def _named_owner(b: CheckedBundle, key: str, node, message: str) -> Problem:
    """A problem on the DMN input column or rule holding node, named by its decision and label or rule number."""
    while node is not None and etree.QName(node).localname not in ("input", "rule", "decision"):
        node = node.getparent()
    if node is None:
        return Problem(None, message, key)
    decision = node
    while decision is not None and etree.QName(decision).localname != "decision":
        decision = decision.getparent()
    table = decision.get("name") or decision.get("id") if decision is not None else ""
    kind = etree.QName(node).localname
    if kind == "rule":
        rules = [r for r in node.getparent() if isinstance(r.tag, str) and etree.QName(r).localname == "rule"]
        name = f"决策表「{table}」第 {rules.index(node) + 1} 条规则"
    elif kind == "input":
        name = f"决策表「{table}」输入列「{node.get('label') or node.get('id')}」"
    else:
        name = f"决策表「{table}」"
    return Problem(node.get("id"), message, key, name)


def decision_tables(b: CheckedBundle) -> list[Problem]:
    """Decision ids are unique over the bundle; input expressions and rule entries pass the safe evaluator."""
    found = []
    seen: set[str] = set()
    for key, root in b.dmn_roots:
        ns = {"dmn": root.nsmap.get(None) or ""}
        for decision in root.iterfind(".//dmn:decision", ns):
            if decision.get("id") in seen:
                found.append(b.problem(decision.get("id"), "决策 id 重复", key))
            seen.add(decision.get("id"))
        for node in root.iterfind(".//dmn:inputExpression/dmn:text", ns):
            try:
                check_expression(node.text or "")
            except UnsafeExpressionError as exc:
                found.append(_named_owner(b, key, node, f"决策表输入表达式不被允许: {exc}"))
        for tag in ("inputEntry", "outputEntry"):
            for node in root.iterfind(f".//dmn:{tag}/dmn:text", ns):
                problem = dmn_entry_problem(node.text or "")
                if problem:
                    found.append(_named_owner(b, key, node, f"决策表规则不被允许: {problem}"))
    return found


def business_rule_decisions(b: CheckedBundle) -> list[Problem]:
    """A business rule task names a decision (calledDecisionId) one of the bundle's DMN files holds."""
    found = []
    for node in b.elements():
        if local(node) != "businessRuleTask":
            continue
        called = node.find(f"{q('extensionElements')}/{q('calledDecisionId', SPIFF_NS)}")
        decision = (called.text or "").strip() if called is not None else ""
        if not decision:
            found.append(b.problem(node.get("id"), "规则任务没有选择决策表(calledDecisionId)"))
        elif decision not in b.decisions:
            found.append(b.problem(node.get("id"), f"决策表 {decision!r} 不存在"))
    return found
