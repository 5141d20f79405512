"""A procedure compiled by the simple designer survives bpmn-js (the studio's BPMN mode): imported into the
modeler and exported again — as 切换到 BPMN 高级模式 and back does — and with a shape moved, every block kind
reads back as the same simple model (bpmn-js keeps what the compiler wrote, e.g. a 会签 step's loop references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.studio.simple.decompiler import decompile
from tests.unit.test_simple_compiler import BLOCKS, CTX, compiled, model_with

DIST = Path(__file__).resolve().parents[2] / "web" / "assets" / "node_modules" / "bpmn-js" / "dist"
PAGE = """<html><head><script src="{dist}/bpmn-modeler.production.min.js"></script></head><body>
<div id="c" style="width:1200px;height:700px"></div><script>
const modeler = new BpmnJS({{container: '#c'}});
window.exportAgain = async ([xml, moved]) => {{
  await modeler.importXML(xml);
  if (moved) {{
    const element = modeler.get('elementRegistry').get(moved);
    modeler.get('modeling').moveElements([element], {{x: 40, y: 0}});
  }}
  return (await modeler.saveXML({{format: true}})).xml;
}};
</script></body></html>"""


@pytest.fixture
def modeler(browser, tmp_path):
    if not (DIST / "bpmn-modeler.production.min.js").exists():
        pytest.fail("bpmn-js is not installed: run `make assets`")
    html = tmp_path / "modeler.html"
    html.write_text(PAGE.format(dist=DIST.as_uri()), encoding="utf-8")
    context = browser.new_context()
    page = context.new_page()
    page.goto(html.as_uri())
    page.wait_for_function("typeof window.exportAgain === 'function'")
    yield page
    context.close()


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_a_compiled_block_reads_back_the_same_after_bpmn_js_exports_it(modeler, kind):
    _model, files = compiled(model_with(BLOCKS[kind]))
    expected = decompile(files, CTX).to_json()
    for moved in (None, "b_review"):
        xml = modeler.evaluate("args => window.exportAgain(args)", [files["bpmn/sample.bpmn"], moved])
        assert xml != files["bpmn/sample.bpmn"]
        assert decompile({**files, "bpmn/sample.bpmn": xml}, CTX).to_json() == expected, (kind, moved)


def test_the_shipped_countersign_keeps_its_signers_after_bpmn_js_exports_it(modeler):
    """项目库's 领导小组审定 (会签) declares its loop collections as properties too: saved in BPMN mode, bpmn-js would
    otherwise drop loopDataInputRef/OutputRef (they name no element) and the step would lose its signers."""
    root = Path(__file__).resolve().parents[2]
    shipped = (root / "workflows" / "project_library" / "project_library.bpmn").read_text(encoding="utf-8")
    xml = modeler.evaluate("args => window.exportAgain(args)", [shipped, None])
    assert "<bpmn:loopDataInputRef>leader_signers</bpmn:loopDataInputRef>" in xml
    assert "<bpmn:loopDataOutputRef>leader_votes</bpmn:loopDataOutputRef>" in xml
