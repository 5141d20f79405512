"""Safe evaluation of BPMN/DMN expressions and script tasks: no Python ``eval`` or ``exec``.

Expressions (gateway conditions, timer expressions, DMN entries) are evaluated by
``simpleeval``, which parses to an AST and walks a whitelist: no attribute access to
dunder names, no imports, no builtins beyond the helpers listed here.

Script tasks are a sequence of ``name = expression`` lines; each expression goes through
the same evaluator. Anything else (imports, loops, function definitions, attribute or
subscript targets) is refused when the procedure is deployed and again at run time.

Cost is bounded (issue 15): an expression is at most MAX_EXPRESSION_CHARS long, MAX_NODES syntax
nodes and MAX_DEPTH levels deep (a script MAX_SCRIPT_CHARS); every value it builds is checked as it is
built — strings up to MAX_TEXT characters, containers up to MAX_ITEMS items and MAX_WEIGHT in all
(nested items plus characters / 100), integers up to MAX_INT_BITS bits, ``sum`` over numbers only.
Validation evaluates the parts of an expression that use no data (``"a" * 99999``,
``[[0] * 1000] * 1000``) under the same limits, so they are refused before deploy. Messages are short
and Chinese: an expression is quoted only up to 60 characters.
"""

from __future__ import annotations

import ast
import functools
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from simpleeval import (
    DEFAULT_OPERATORS,
    EvalWithCompoundTypes,
    InvalidExpression,
    IterableTooLong,
    NameNotDefined,
    NumberTooHigh,
)
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine.core import clock as clock_mod
from engine.core.errors import UnsafeExpressionError
from engine.procedures import members

CHINA_TZ = timezone(timedelta(hours=8))

MAX_EXPRESSION_CHARS = 2_000
MAX_SCRIPT_CHARS = 20_000
MAX_NODES = 500
MAX_DEPTH = 40
MAX_TEXT = 10_000
MAX_ITEMS = 1_000
MAX_WEIGHT = 20_000
MAX_INT_BITS = 256


class TooCostly(UnsafeExpressionError):
    """An expression builds a value beyond the limits, or is too long or too deeply nested."""


def _brief(source: str) -> str:
    source = " ".join(source.split())
    return repr(source if len(source) <= 60 else source[:57] + "...")


def _weight(value: Any, budget: int = MAX_WEIGHT) -> int:
    """Items in value, nested, plus characters / 100; stops counting once past budget."""
    total, stack = 0, [value]
    while stack and total <= budget:
        node = stack.pop()
        total += 1
        if isinstance(node, str):
            total += len(node) // 100
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)
    return total


def _bounded(value: Any) -> Any:
    """value, if within the limits.

    :raises TooCostly: a string, container or integer beyond them.
    """
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise TooCostly("表达式产生的数值过大")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise TooCostly(f"表达式产生的文字过长(最多 {MAX_TEXT} 字)")
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if len(value) > MAX_ITEMS or _weight(value) > MAX_WEIGHT:
            raise TooCostly(f"表达式产生的列表过大(最多 {MAX_ITEMS} 项)")
    return value


def _size_after_repeat(seq: Any, times: Any) -> None:
    if isinstance(times, int) and not isinstance(times, bool) and hasattr(seq, "__len__"):
        limit = MAX_TEXT if isinstance(seq, str) else MAX_ITEMS
        if times > 0 and len(seq) * times > limit:
            raise TooCostly("表达式中的重复次数过大")
        if not isinstance(seq, str) and times > 0 and _weight(seq) * times > MAX_WEIGHT:
            raise TooCostly("表达式中的重复次数过大")


def _mult(a, b):
    _size_after_repeat(a, b)
    _size_after_repeat(b, a)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise TooCostly("表达式产生的数值过大")
    return a * b


def _add(a, b):
    if hasattr(a, "__len__") and hasattr(b, "__len__"):
        limit = MAX_TEXT if isinstance(a, str) else MAX_ITEMS
        if len(a) + len(b) > limit:
            raise TooCostly("表达式产生的值过大")
    return a + b


def _power(a, b):
    if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0 and \
            max(a.bit_length() - 1, 1) * b > MAX_INT_BITS:
        raise TooCostly("表达式产生的数值过大")
    if isinstance(b, (int, float)) and abs(b) > 10_000:
        raise TooCostly("表达式中的指数过大")
    return a**b


def _lshift(a, b):
    if isinstance(b, int) and b > MAX_INT_BITS:
        raise TooCostly("表达式产生的数值过大")
    return a << b


def _mod(a, b):
    if isinstance(a, str):
        raise TooCostly("表达式不允许用 % 格式化文字")
    return a % b


OPERATORS = {**DEFAULT_OPERATORS, ast.Mult: _mult, ast.Add: _add, ast.Pow: _power, ast.LShift: _lshift,
             ast.Mod: _mod}


def _sum(values, start=0):
    """``sum`` over numbers only: adding lists or strings this way costs quadratic time."""
    items = list(values)
    if not all(isinstance(v, (int, float)) for v in [*items, start]):
        raise TooCostly("sum 只能用于数字")
    return sum(items, start)


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


_NAME_ERROR = re.compile(r"name '([^']{1,64})' is not defined")
_EXPRESSION = re.compile(r"[Ee]rror evaluating expression '(.{1,200}?)'")


def failure_message(exc: BaseException) -> str:
    """What a failure of a diagram's expression or script means, in Chinese: never the exception's class or
    English text (SpiffWorkflow wraps the original in a WorkflowTaskException naming its class)."""
    from engine.core.errors import XiangFlowError

    if isinstance(exc, XiangFlowError):  # ours: already Chinese
        return str(exc)
    text, inner = str(exc), exc.__cause__ or exc.__context__
    for _ in range(5):  # SpiffWorkflow keeps the original failure as the context of its own
        if inner is None:
            break
        text, inner = f"{text} {inner}", inner.__cause__ or inner.__context__
    kind = getattr(exc, "error_type", None) or type(exc).__name__
    where = _EXPRESSION.search(text)
    expression = f"(表达式 {where.group(1)})" if where else ""
    name = _NAME_ERROR.search(text)
    if name:
        return f"数据中没有字段 {name.group(1)}:前面的步骤没有填写它,或字段名写错了{expression}"
    if kind == "KeyError" and isinstance(exc, KeyError) and exc.args:
        return f"数据中没有 {str(exc.args[0])[:64]}{expression}"
    words = {"TypeError": "值的类型不匹配(例如拿空值与数字比较,或把文字当数字计算)",
             "ZeroDivisionError": "除数为零", "ValueError": "数值无效(例如日期或数字的写法不对)",
             "KeyError": "数据中缺少需要的字段", "NameError": "数据中缺少需要的字段", "IndexError": "列表中没有那么多项",
             "AttributeError": "使用了数据没有的属性", "SyntaxError": "表达式或脚本有语法错误",
             "OverflowError": "数值过大", "RecursionError": "嵌套过深"}
    return f"{words.get(kind, '表达式或脚本执行出错')}{expression}"


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
    "sum": _sum,
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
    "role_members": members.role_members,
}


# functions without side effects or data: validation may run them on constant arguments
PURE_FUNCTIONS = {"len", "str", "int", "float", "bool", "min", "max", "abs", "round", "sum", "any", "all", "sorted",
                  "days_between"}


class BoundedEval(EvalWithCompoundTypes):
    """simpleeval with every built value checked against the limits as it is built."""

    def _eval_formattedvalue(self, node):
        if node.format_spec:
            raise TooCostly("表达式不允许使用格式说明")
        return super()._eval_formattedvalue(node)

    def _eval(self, node):
        value = super()._eval(node)
        return value if isinstance(node, ast.Name) else _bounded(value)  # data is not built by the expression


def _evaluator(names: dict[str, Any]) -> EvalWithCompoundTypes:
    functions = dict(SAFE_FUNCTIONS)
    functions["role_members"] = lambda role: members.role_members(role, names.get("region_code"))
    return BoundedEval(operators=OPERATORS, names=names, functions=functions)


def evaluate(expression: str, names: dict[str, Any]) -> Any:
    """Evaluate one expression over names.

    :raises UnsafeExpressionError: the expression uses something outside the whitelist.
    :raises NameError, TypeError, ValueError: ordinary evaluation errors.
    """
    tree = _parsed(expression)
    try:
        return _evaluator(names).eval(expression, previously_parsed=tree.body)
    except NameNotDefined as exc:
        # SpiffWorkflow parses this exact English form to suggest similar names
        raise NameError(f"name '{exc.name}' is not defined (表达式中的变量未定义: {_brief(expression)})",
                        name=exc.name) from exc
    except TooCostly:
        raise
    except (IterableTooLong, NumberTooHigh) as exc:
        raise TooCostly(f"表达式的计算量过大: {_brief(expression)}") from exc
    except InvalidExpression as exc:
        raise UnsafeExpressionError(f"表达式不被允许: {_brief(expression)}") from exc
    except (OverflowError, MemoryError, RecursionError) as exc:
        raise TooCostly(f"表达式的计算量过大: {_brief(expression)}") from exc


def _parse(expression: str, limit: int = MAX_EXPRESSION_CHARS) -> ast.Expression:
    """Parse one expression within the size limits.

    :raises UnsafeExpressionError: too long, too deep, too many nodes, or a syntax error.
    """
    text = expression.strip()
    if len(text) > limit:
        raise TooCostly(f"表达式过长(最多 {limit} 个字符)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"表达式语法错误: {_brief(expression)}") from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise TooCostly("表达式嵌套过深") from exc
    _check_shape(tree)
    return tree


# The checked parse of each expression source, kept per process: a diagram's expressions are evaluated on
# every task (gateways, DMN rules, scripts, dueAt) and a source string always parses and checks the same way.
# Bounded (LRU), so studio dry runs of many drafts cannot grow it without limit; errors are not cached.
# Only parsing and the static checks are kept: every evaluation still runs under BoundedEval's limits.
EXPRESSION_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=EXPRESSION_CACHE_SIZE)
def _parsed(expression: str) -> ast.Expression:
    """``_parse`` with the default limit, once per source string (the tree is never changed by its users)."""
    return _parse(expression)


def _check_shape(tree: ast.AST) -> None:
    nodes = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise TooCostly(f"表达式过于复杂(最多 {MAX_NODES} 个语法单元)")
        if depth > MAX_DEPTH:
            raise TooCostly(f"表达式嵌套过深(最多 {MAX_DEPTH} 层)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _fold_constants(tree: ast.AST) -> None:
    """Evaluate, under the limits, every largest part of tree that reads no data.

    :raises TooCostly: such a part builds a value beyond the limits.
    """
    root = tree.body if isinstance(tree, ast.Expression) else tree
    constant: dict[ast.AST, bool] = {}
    for node in reversed(list(ast.walk(root))):  # children before parents
        if isinstance(node, ast.Call):
            constant[node] = (isinstance(node.func, ast.Name) and node.func.id in PURE_FUNCTIONS
                              and all(constant[a] for a in node.args)
                              and all(constant[k.value] for k in node.keywords))
        elif isinstance(node, (ast.Name, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Starred)):
            constant[node] = False
        else:
            constant[node] = all(constant.get(c, True) for c in ast.iter_child_nodes(node))
    stack = [root]
    while stack:
        node = stack.pop()
        if not constant.get(node, False):
            stack.extend(ast.iter_child_nodes(node))
        elif not isinstance(node, ast.Constant):
            _try_constant(node)


def _try_constant(node: ast.AST) -> None:
    evaluator = BoundedEval(operators=OPERATORS, names={}, functions={n: SAFE_FUNCTIONS[n] for n in PURE_FUNCTIONS})
    try:
        evaluator.eval("", previously_parsed=node)
    except TooCostly:
        raise
    except (OverflowError, MemoryError, RecursionError, IterableTooLong, NumberTooHigh) as exc:
        raise TooCostly("表达式的计算量过大") from exc
    except Exception:  # noqa: BLE001, S110 - an ordinary error (1/0, a wrong type) shows at run time
        pass


def check_expression(expression: str) -> None:
    """Refuse an expression that is not valid or not allowed, without evaluating it.

    :raises UnsafeExpressionError: syntax error or a construct outside the whitelist.
    """
    _checked(expression)


@functools.lru_cache(maxsize=EXPRESSION_CACHE_SIZE)
def _checked(expression: str) -> bool:
    """``check_expression``'s checks, once per source string that passes them."""
    tree = _parsed(expression)
    _check_nodes(tree, expression)
    _fold_constants(tree)
    return True


def _check_nodes(tree: ast.AST, source: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise UnsafeExpressionError(f"表达式不允许访问属性 .{node.attr[:40]}: {_brief(source)}")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise UnsafeExpressionError(f"表达式不允许使用名称 {node.id[:40]}: {_brief(source)}")
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            raise UnsafeExpressionError(f"表达式不允许使用格式说明(如 {{x:>9}}): {_brief(source)}")
        if isinstance(node, (ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            raise UnsafeExpressionError(f"表达式不允许使用 lambda、await、yield 或 := : {_brief(source)}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in SAFE_FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise UnsafeExpressionError(f"表达式不允许调用 {name[:40]}: {_brief(source)}")


def parse_script(script: str) -> list[tuple[str, str]]:
    """Split a script task into (variable, expression) assignments.

    :raises UnsafeExpressionError: any statement other than ``name = expression``.
    """
    return list(_parsed_script(script))


@functools.lru_cache(maxsize=EXPRESSION_CACHE_SIZE)
def _parsed_script(script: str) -> tuple[tuple[str, str], ...]:
    """``parse_script``'s checked assignments, once per script that passes the checks."""
    if len(script) > MAX_SCRIPT_CHARS:
        raise TooCostly(f"脚本过长(最多 {MAX_SCRIPT_CHARS} 个字符)")
    try:
        module = ast.parse(script)
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"脚本语法错误(第 {exc.lineno} 行)") from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise TooCostly("脚本嵌套过深") from exc
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
        if len(source) > MAX_EXPRESSION_CHARS:
            raise TooCostly(f"脚本第 {stmt.lineno} 行过长(最多 {MAX_EXPRESSION_CHARS} 个字符)")
        _check_shape(stmt.value)
        _check_nodes(stmt.value, source)
        _fold_constants(stmt.value)
        steps.append((stmt.targets[0].id, source))
    return tuple(steps)


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
        _validated(expression)


@functools.lru_cache(maxsize=EXPRESSION_CACHE_SIZE)
def _validated(expression: str) -> bool:
    """``SafeScriptEngine.validate``'s checks, once per expression that passes them.

    SyntaxError must pass through untouched: the DMN engine relies on it.
    """
    if len(expression.strip()) > MAX_EXPRESSION_CHARS:
        raise TooCostly(f"表达式过长(最多 {MAX_EXPRESSION_CHARS} 个字符)")
    tree = ast.parse(expression.strip(), mode="eval")
    _check_shape(tree)
    _check_nodes(tree, expression)
    return True


SCRIPT_ENGINE = SafeScriptEngine()
