"""Safe evaluation of BPMN/DMN expressions and script tasks: no Python ``eval`` or ``exec``.

Expressions (gateway conditions, timer expressions, DMN entries) are evaluated by
``simpleeval``, which parses to an AST and walks a whitelist: no attribute access to
dunder names, no imports, no builtins beyond the helpers listed here.

Script tasks are a sequence of ``name = expression`` lines; each expression goes through
the same evaluator. Anything else (imports, loops, function definitions, attribute or
subscript targets) is refused when the procedure is deployed and again at run time.
"""

from __future__ import annotations

import ast
from datetime import date, datetime, timedelta, timezone
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression, NameNotDefined
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine.core import clock as clock_mod
from engine.core.errors import UnsafeExpressionError
from engine.runtime import countersign

CHINA_TZ = timezone(timedelta(hours=8))


def _today() -> date:
    return clock_mod.current().now().astimezone(CHINA_TZ).date()


def _calendar_date(month: int, day: int, year: int | None = None, hour: int = 23, minute: int = 59) -> str:
    """An ISO datetime (China time) on month/day of the given or current year, for timeDate."""
    year = year or _today().year
    return datetime(year, month, day, hour, minute, tzinfo=CHINA_TZ).isoformat()


def _date_add(start: str, days: int, hour: int = 23, minute: int = 59) -> str:
    """An ISO datetime (China time) days after the date start (YYYY-MM-DD…), for timeDate limits."""
    day = date.fromisoformat(str(start)[:10]) + timedelta(days=int(days))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA_TZ).isoformat()


def _workdays_after(start: str, count: int, hour: int = 23, minute: int = 59) -> str:
    """An ISO datetime (China time) at the end of the count-th working day after the date start."""
    from engine.core import workcalendar

    day = workcalendar.current().add_workdays(date.fromisoformat(str(start)[:10]), int(count))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA_TZ).isoformat()


def _workdays(count: int) -> str:
    """The end of the count-th working day from today, for timeDate limits counted in working days."""
    return _workdays_after(_today().isoformat(), count)


def _days_between(start: str, end: str) -> int:
    return (date.fromisoformat(str(end)[:10]) - date.fromisoformat(str(start)[:10])).days


SAFE_FUNCTIONS: dict[str, Any] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "sum": sum,
    "any": any,
    "all": all,
    "sorted": sorted,
    "today": lambda: _today().isoformat(),
    "calendar_date": _calendar_date,
    "days_between": _days_between,
    "date_add": _date_add,
    "workdays": _workdays,
    "workdays_after": _workdays_after,
    # bound to the case's region by _evaluator: the holders of a role in the case's jurisdiction (会签)
    "role_members": countersign.role_members,
}


def _evaluator(names: dict[str, Any]) -> EvalWithCompoundTypes:
    functions = dict(SAFE_FUNCTIONS)
    functions["role_members"] = lambda role: countersign.role_members(role, names.get("region_code"))
    return EvalWithCompoundTypes(names=names, functions=functions)


def evaluate(expression: str, names: dict[str, Any]) -> Any:
    """Evaluate one expression over names.

    :raises UnsafeExpressionError: the expression uses something outside the whitelist.
    :raises NameError, TypeError, ValueError: ordinary evaluation errors.
    """
    try:
        return _evaluator(names).eval(expression)
    except NameNotDefined as exc:
        # SpiffWorkflow parses this exact English form to suggest similar names
        raise NameError(f"name '{exc.name}' is not defined (表达式中的变量未定义: {expression!r})",
                        name=exc.name) from exc
    except InvalidExpression as exc:
        raise UnsafeExpressionError(f"表达式不被允许: {expression!r}: {exc}") from exc


def check_expression(expression: str) -> None:
    """Refuse an expression that is not valid or not allowed, without evaluating it.

    :raises UnsafeExpressionError: syntax error or a construct outside the whitelist.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"表达式语法错误: {expression!r}") from exc
    _check_nodes(tree, expression)


def _check_nodes(tree: ast.AST, source: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise UnsafeExpressionError(f"表达式不允许访问属性 .{node.attr}: {source!r}")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise UnsafeExpressionError(f"表达式不允许使用名称 {node.id}: {source!r}")
        if isinstance(node, (ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            raise UnsafeExpressionError(f"表达式不允许使用 {type(node).__name__}: {source!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in SAFE_FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise UnsafeExpressionError(f"表达式不允许调用 {name}: {source!r}")


def parse_script(script: str) -> list[tuple[str, str]]:
    """Split a script task into (variable, expression) assignments.

    :raises UnsafeExpressionError: any statement other than ``name = expression``.
    """
    try:
        module = ast.parse(script)
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"脚本语法错误(第 {exc.lineno} 行)") from exc
    steps: list[tuple[str, str]] = []
    for stmt in module.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and not stmt.targets[0].id.startswith("_")
        ):
            raise UnsafeExpressionError(
                f"脚本第 {stmt.lineno} 行不被允许: 只允许 “变量 = 表达式” 形式的赋值"
            )
        source = ast.get_source_segment(script, stmt.value) or ""
        _check_nodes(stmt.value, source)
        steps.append((stmt.targets[0].id, source))
    return steps


class SafeEnvironment(BasePythonScriptEngineEnvironment):
    """SpiffWorkflow script environment that never reaches Python's eval or exec."""

    def evaluate(self, expression, context, external_context=None):
        check_expression(expression)
        names = dict(external_context or {})
        names.update(context)
        return evaluate(expression, names)

    def execute(self, script, context, external_context=None):
        for name, expression in parse_script(script):
            names = dict(external_context or {})
            names.update(context)
            context[name] = evaluate(expression, names)
        return True

    def call_service(self, context, **kwargs):
        raise UnsafeExpressionError("XiangFlow 不支持服务任务")


class SafeScriptEngine(PythonScriptEngine):
    def __init__(self) -> None:
        super().__init__(environment=SafeEnvironment())

    def validate(self, expression):
        # SyntaxError must pass through untouched: the DMN engine relies on it.
        _check_nodes(ast.parse(expression.strip(), mode="eval"), expression)


SCRIPT_ENGINE = SafeScriptEngine()
