"""The safe expression layer refuses code at run time, independent of the deploy-time checks."""

from __future__ import annotations

import pytest

from engine.core.errors import UnsafeExpressionError
from engine.procedures.expressions import SafeEnvironment, SafeScriptEngine, check_expression, evaluate, parse_script

UNSAFE_EXPRESSIONS = [
    "__import__('os')",
    "__import__('os').system('true')",
    "().__class__",
    "().__class__.__base__.__subclasses__()",
    "open('/etc/passwd')",
    "open('/etc/passwd').read()",
    "eval('1 + 1')",
    "exec('x = 1')",
    "getattr(x, '__class__')",
    "globals()",
    "x.__dict__",
    "(lambda: 1)()",
    "compile('1', 'f', 'eval')",
]


@pytest.mark.parametrize("expression", UNSAFE_EXPRESSIONS)
def test_evaluate_refuses_unsafe_expressions_even_without_the_static_check(expression):
    with pytest.raises(UnsafeExpressionError):
        evaluate(expression, {"x": 1})


@pytest.mark.parametrize("expression", UNSAFE_EXPRESSIONS)
def test_the_static_check_refuses_unsafe_expressions(expression):
    with pytest.raises(UnsafeExpressionError):
        check_expression(expression)


@pytest.mark.parametrize("expression", UNSAFE_EXPRESSIONS)
def test_the_spiff_environment_refuses_unsafe_gateway_conditions(expression):
    with pytest.raises(UnsafeExpressionError):
        SafeEnvironment().evaluate(expression, {"x": 1})


@pytest.mark.parametrize("script", [
    "import os",
    "from os import system",
    "x = __import__('os')",
    "x = ().__class__.__subclasses__()",
    "x = open('/etc/passwd')",
    "def f():\n    return 1",
    "for i in range(3):\n    x = i",
    "x.attr = 1",
    "x['k'] = 1",
    "_hidden = 1",
    "x = 1\nimport subprocess",
    "x = 1; del x",
])
def test_the_spiff_environment_refuses_unsafe_scripts_and_leaves_the_data_alone(script):
    context = {"x": 1}
    with pytest.raises(UnsafeExpressionError):
        SafeEnvironment().execute(script, context)
    assert context == {"x": 1}


def test_a_refused_script_line_runs_no_earlier_line_either():
    context: dict = {}
    with pytest.raises(UnsafeExpressionError):
        SafeEnvironment().execute("a = 1\nb = open('/etc/passwd')", context)
    assert context == {}


def test_safe_expressions_and_scripts_still_work():
    assert evaluate("income / members >= line", {"income": 13000, "members": 2, "line": 6500}) is True
    assert evaluate("special_category in ['低保', '特困', '残疾']", {"special_category": "特困"}) is True
    assert evaluate("max(a, b) + len(c)", {"a": 1, "b": 5, "c": [1, 2]}) == 7
    assert evaluate("days_between('2026-09-01', '2026-09-08')", {}) == 7
    context = {"score": 4}
    SafeEnvironment().execute("doubled = score * 2\nhigh = doubled > 5", context)
    assert context == {"score": 4, "doubled": 8, "high": True}
    assert parse_script("a = 1\nb = a + 1") == [("a", "1"), ("b", "a + 1")]


def test_service_tasks_are_refused():
    with pytest.raises(UnsafeExpressionError):
        SafeEnvironment().call_service({}, operation_name="http/GetRequest")


def test_the_script_engine_validate_hook_refuses_attribute_access():
    with pytest.raises(UnsafeExpressionError):
        SafeScriptEngine().validate("x.__class__")
    SafeScriptEngine().validate("x == 1")
