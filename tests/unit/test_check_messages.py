"""Validation and run-time messages on real-world files are Chinese and never show an exception's class or
English text (issue 14 item 5): a broken notice catalog (bad JSON, kinds of the wrong shape, unknown field
keys, a level that does not exist), DMN files refused by the engine, expressions failing in a dry run or a
case (a missing field, a type mismatch), a file that is not a zip."""

from __future__ import annotations

import json
import re

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.core.errors import DefinitionError
from engine.procedures import checks
from engine.procedures.expressions import SCRIPT_ENGINE, failure_message
from engine.studio.zipfiles import read_zip
from tests.unit.test_simple_compiler import BLOCKS, CHECKS, compiled, model_with

ENGLISH = re.compile(r"[A-Z][a-z]+(Error|Exception)|Traceback|Expecting|unexpected keyword|is not a valid|"
                     r"object has no attribute|not defined|not supported between")
CATALOG = json.loads(compiled(model_with(BLOCKS["notice"]))[1]["template/notices.json"])


def _catalog_problems(catalog) -> list[str]:
    _model, files = compiled(model_with(BLOCKS["notice"]))
    text = catalog if isinstance(catalog, str) else json.dumps(catalog, ensure_ascii=False)
    return [p.message for p in checks.check({**files, "template/notices.json": text}, CHECKS)]


def _kind(**change):
    kind = {**CATALOG["kinds"][0], **change}
    return {**CATALOG, "kinds": [kind, *CATALOG["kinds"][1:]]}


@pytest.mark.parametrize(("label", "catalog", "words"), [
    ("broken JSON", '{"kinds": [', "不是有效的 JSON(第 1 行"),
    ("kinds not a list", {**CATALOG, "kinds": {"village_public_notice": {}}}, "kinds 必须是列表"),
    ("a kind not an object", {**CATALOG, "kinds": ["village_public_notice"]}, "每个种类必须是对象"),
    ("a missing key", _kind(template=None) | {"kinds": [{k: v for k, v in CATALOG["kinds"][0].items()
                                                         if k != "office_level"}]}, "缺少 office_level"),
    ("a level that does not exist", _kind(office_level="city_hall"), "office_level 只能是"),
    ("an unknown field key", _kind(fields=[{"key": "phone", "label": "电话", "colour": "red"}]), "不认识的项 colour"),
    ("due of the wrong shape", _kind(due="always"), "due 必须是对象"),
    ("stylesheets a string", {**CATALOG, "stylesheets": "gbt9704.css"}, "stylesheets 必须是文件名的列表"),
])
def test_a_broken_notice_catalog_is_said_in_chinese(label, catalog, words):
    messages = _catalog_problems(catalog)
    assert any(words in m for m in messages), (label, messages)
    assert not any(ENGLISH.search(m) for m in messages), (label, messages)


def test_a_dmn_file_refused_by_the_engine_is_called_a_decision_table_not_a_diagram():
    dmn = ('<?xml version="1.0" encoding="UTF-8"?><definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" '
           'id="d" name="d" namespace="x"><decision id="level" name="档次"><decisionTable id="t">'
           '<input id="i1" label="人口"/><output id="o1" name="level" typeRef="string"/></decisionTable>'
           '</decision></definitions>')
    _model, files = compiled(model_with(BLOCKS["cc"]))
    messages = [p.message for p in checks.check({**files, "dmn/level.dmn": dmn}, CHECKS)]
    assert messages and all("决策表" in m and "BPMN" not in m for m in messages), messages
    assert not any(ENGLISH.search(m) for m in messages)


def _failing_run(data: dict) -> Exception:
    """Run the compiled condition model on SpiffWorkflow with data; the exception its gateway raises."""
    _model, files = compiled(model_with(BLOCKS["condition"]))
    bundle = checks.inspect(files, CHECKS)
    workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=SCRIPT_ENGINE)
    try:
        for _ in range(5):
            workflow.do_engine_steps()
            for task in workflow.get_tasks(state=TaskState.READY):
                task.data.update(data)
                task.run()
    except Exception as exc:  # noqa: BLE001 - the failure under test
        return exc
    raise AssertionError("the run did not fail")


@pytest.mark.parametrize(("data", "words"), [
    ({}, "数据中没有字段 "),
    ({"family_size": None, "category": "dibao", "needs": []}, "值的类型不匹配"),
])
def test_an_expression_failing_at_run_time_is_said_in_chinese(data, words):
    exc = _failing_run(data)
    message = failure_message(exc)
    assert words in message, message
    assert not ENGLISH.search(message) and type(exc).__name__ not in message, message


def test_bytes_that_are_not_a_zip_are_refused_in_chinese():
    with pytest.raises(DefinitionError) as caught:
        read_zip(b"PK\x03\x04 not really a zip")
    text = " ".join(why for _where, why in caught.value.problems)
    assert "不是有效的 zip 文件" in text and not ENGLISH.search(text) and "File is not" not in text


def test_a_camunda_condition_gets_a_hint_instead_of_a_syntax_error():
    _model, files = compiled(model_with(BLOCKS["condition"]))
    text = files["bpmn/sample.bpmn"].replace("family_size &gt;= 5", "${familySize &gt;= 5}", 1)
    assert text != files["bpmn/sample.bpmn"]
    (problem,) = [p for p in checks.check({**files, "bpmn/sample.bpmn": text}, CHECKS)]
    assert "Camunda/Flowable 的 ${…} 写法" in problem.message and problem.element_name == "人口多"
