"""Every shipped procedure deploys, and its diagram opens cleanly in a modeler (full DI)."""

from pathlib import Path

import pytest
from lxml import etree

from engine.access.directory import ROLES
from engine.core import settings
from engine.procedures.definitions import NS, compile_bundle, read_folder

FOLDERS = sorted(p for p in settings.WORKFLOWS_DIR.iterdir() if (p / "procedure.json").is_file())
FLOW_ELEMENTS = (
    "startEvent", "endEvent", "userTask", "task", "scriptTask", "businessRuleTask", "serviceTask", "manualTask",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "intermediateCatchEvent",
    "intermediateThrowEvent", "boundaryEvent", "subProcess", "callActivity", "sequenceFlow", "lane", "participant",
)


def test_the_four_seed_procedures_are_shipped():
    assert {p.name for p in FOLDERS} >= {"monitoring_exit"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_bpmn_element_has_diagram_interchange(folder: Path):
    for bpmn in folder.glob("*.bpmn"):
        root = etree.parse(str(bpmn)).getroot()
        drawn = {el.get("bpmnElement") for el in root.iterfind(".//bpmndi:BPMNShape", NS)}
        drawn |= {el.get("bpmnElement") for el in root.iterfind(".//bpmndi:BPMNEdge", NS)}
        missing = [
            f"{tag}[{el.get('id')}]"
            for tag in FLOW_ELEMENTS
            for el in root.iterfind(f".//bpmn:{tag}", NS)
            if el.get("id") not in drawn
        ]
        assert not missing, f"{bpmn.name}: no DI for {missing}"
        for edge in root.iterfind(".//bpmndi:BPMNEdge", NS):
            assert len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2, edge.get("id")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_procedure_compiles_with_its_forms_and_roles(folder: Path):
    bundle = read_folder(folder, settings.FORMS_DIR)
    spec, _subs = compile_bundle(bundle, {code for code, _name, _level in ROLES})
    assert spec.name == bundle.process_id
