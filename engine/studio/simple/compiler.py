"""Compile a simple model into a draft's files: ``procedure.json``, one BPMN (lanes, properties, diagram),
one form-js form per step and, when the model issues notices, the simple notice catalog."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.studio.simple.bpmnxml import write_bpmn
from engine.studio.simple.graph import Graph, build_graph
from engine.studio.simple.layout import layout
from engine.studio.simple.model import Block, Model
from engine.studio.simple.semantics import Known, check_model

NOTICE_DIR = Path(__file__).parent / "notices"
FORM_SCHEMA = "https://unpkg.com/@bpmn-io/form-json-schema/resources/schema.json"
FORM_KEYS = ("$schema", "type", "id", "schemaVersion", "exporter")  # what the compiler writes on every form
DESIGNER = "simple"


@dataclass(frozen=True)
class CompileContext:
    """What compiling needs from the server: roles (names, levels), notice kinds, linkable procedures."""

    role_names: dict[str, str]
    role_levels: dict[str, str]
    notice_kinds: frozenset[str]
    procedures: frozenset[str]

    @property
    def known(self) -> Known:
        return Known(frozenset(self.role_names), self.notice_kinds, self.procedures)


def notice_catalog() -> dict[str, str]:
    """The simple designer's notice catalog as draft files (``template/…``)."""
    return {f"template/{p.name}": p.read_text(encoding="utf-8") for p in sorted(NOTICE_DIR.iterdir())
            if p.suffix in (".json", ".html")}


def notice_kinds() -> list[dict[str, Any]]:
    """The notice kinds a simple model may issue (code, name, description, issuer roles)."""
    kinds = json.loads((NOTICE_DIR / "notices.json").read_text(encoding="utf-8"))["kinds"]
    return [{"code": k["code"], "name": k["name"], "description": k["description"],
             "issuer_roles": k["issuer_roles"]} for k in kinds]


def compile_model(model: Model, ctx: CompileContext, checked: bool = True) -> dict[str, str]:
    """The draft files of model.

    :raises ValidationError: (when checked) the model names an unknown role, notice kind, procedure or field.
    """
    if checked:
        check_model(model, ctx.known)
    meta = model.meta
    graph = build_graph(model)
    diagram = layout(graph, {r: f"{n} ({r})" for r, n in ctx.role_names.items()}, ctx.role_levels, meta.name)
    manifest: dict[str, Any] = {
        "code": meta.code, "name": meta.name, "subject_kind": meta.subject_kind, "process_id": meta.code,
        "description": meta.description, "designer": DESIGNER,
        "settings": {"day_kind": meta.day_kind, "complaint_phone": meta.complaint_phone},
    }
    if meta.one_running_case_per_subject:
        manifest["one_running_case_per_subject"] = True
    files = {"procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2),
             f"bpmn/{meta.code}.bpmn": write_bpmn(graph, diagram, meta.code, meta.name, ctx.role_names)}
    files.update(_forms(graph, meta.code))
    if any(b.kind == "notice" for b in model.walk()):
        files.update(notice_catalog())
    return files


def _forms(graph: Graph, code: str) -> dict[str, str]:
    out = {}
    for form_key, info in graph.forms.items():
        block: Block = info["block"]
        out[f"form/{form_key}"] = json.dumps(form_file(block, code), ensure_ascii=False, indent=2)
    return out


def default_components(block: Block) -> list[dict[str, Any]]:
    if block.kind == "notice":
        return [{"type": "text", "text": f"#### {block.name}\n在“公示公告”页面签发后,公示期即开始。"}]
    return [{"type": "text", "text": f"#### {block.name}"}]


def form_file(block: Block, code: str) -> dict[str, Any]:
    """A step's form-js schema: the model's form with the compiler's keys and component ids."""
    form = dict(block.form) if block.form is not None and block.kind != "notice" else {}
    components = [dict(c) for c in form.get("components", default_components(block)) if isinstance(c, dict)]
    used: set[str] = {str(c["id"]) for c in components if isinstance(c.get("id"), str)}
    for index, component in enumerate(components):
        if not isinstance(component.get("id"), str):
            base = f"Field_{component['key']}" if isinstance(component.get("key"), str) else f"Text_{index + 1}"
            cid, n = base, 2
            while cid in used:
                cid, n = f"{base}_{n}", n + 1
            used.add(cid)
            component["id"] = cid
    rest = {k: v for k, v in form.items() if k not in FORM_KEYS and k != "components"}
    return {"$schema": FORM_SCHEMA, "type": "default", "id": f"{code}_{block.id}", "schemaVersion": 16,
            "exporter": {"name": "XiangFlow 简易模式", "version": "1.0"}, **rest, "components": components}
