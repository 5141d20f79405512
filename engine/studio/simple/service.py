"""The studio's simple designer (简易模式): templates, new drafts from a template, a draft read as a simple model,
and saving a model (compiled into the draft's files, then the procedure checks). A draft stays BPMN + forms:
the model is regenerated from it on every read (decompiler.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.access.assignment import Actor
from engine.core.errors import DefinitionError, ValidationError
from engine.models import Procedure, ProcedureDraft
from engine.procedures.checks import Problem
from engine.studio.simple import vocabulary as vocab
from engine.studio.simple.compiler import CompileContext, compile_model, notice_kinds
from engine.studio.simple.decompiler import OutsideSubset, decompile
from engine.studio.simple.model import Model, parse_model
from engine.studio.validation import StudioValidation

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_ORDER = ("three_level", "four_level_notice", "unit_internal")


def templates() -> list[dict[str, Any]]:
    """The shipped templates (id, name, description, subject kind, model), in the order offered."""
    found = []
    for template_id in TEMPLATE_ORDER:
        data = json.loads((TEMPLATE_DIR / f"{template_id}.json").read_text(encoding="utf-8"))
        found.append(data)
    return found


def problem_dict(problem: Problem, model: Model) -> dict[str, Any]:
    """A check's problem with the block it concerns (helper elements ``<block>__x`` and flows map to their
    block; a branch's flow to its condition or parallel block)."""
    ids = {b.id: b for b in model.walk()}
    branch_of = {br.id: b for b in model.walk() for br in b.children()}
    element = problem.element_id or ""
    base = element.removeprefix("Flow_").split("__")[0]
    block = ids.get(base) or branch_of.get(element)
    return {**problem.as_dict(), "block_id": block.id if block else None,
            "block_name": block.name if block else None}


class StudioSimple(StudioValidation):
    """The simple designer's side of the studio."""

    def simple_context(self, owner_region_code: str | None) -> CompileContext:
        roles = self.roles()
        return CompileContext({r.code: r.name for r in roles}, {r.code: r.level.value for r in roles},
                              frozenset(k["code"] for k in notice_kinds()),
                              frozenset(self.linkable_procedures(owner_region_code)))

    def simple_vocabulary(self, actor: Actor) -> dict[str, Any]:
        """What the block editor offers this admin (roles, notice kinds, field types, procedures …)."""
        self.require_admin(actor)
        linkable = self.linkable_procedures(self._new_owner(actor, None))
        names = {p.code: p.name for p in self.session.scalars(select(Procedure).order_by(Procedure.code))}
        return vocab.vocabulary(self.roles(), notice_kinds(), [(c, names.get(c, c)) for c in sorted(linkable)])

    def simple_templates(self, actor: Actor) -> list[dict[str, Any]]:
        self.require_admin(actor)
        return [{k: t[k] for k in ("id", "name", "description")} | {"subject_kind": t["model"]["meta"]["subject_kind"]}
                for t in templates()]

    def create_from_template(self, actor: Actor, template_id: Any, code: Any, name: Any,
                             owner_region_code: str | None = None, client_addr: str | None = None) -> ProcedureDraft:
        """A new procedure's draft compiled from a template, owned by owner_region_code.

        :raises ValidationError: unknown template, bad code or name, or the code is taken.
        """
        self.require_admin(actor)
        code = code.strip() if isinstance(code, str) else ""
        name = name.strip() if isinstance(name, str) else ""
        errors: dict[str, str] = {}
        template = next((t for t in templates() if t["id"] == template_id), None)
        if template is None:
            errors["template"] = "请选择一个模板"
        self._check_new_code(code, name, errors)
        if errors or template is None:
            raise ValidationError("无法新建流程", errors)
        owner = self._new_owner(actor, owner_region_code)
        data = json.loads(json.dumps(template["model"]))
        data["meta"].update(code=code, name=name)
        model = parse_model(data, code)
        files = compile_model(model, self.simple_context(owner))
        draft = self._new_draft(actor, code, name, files, "template", owner_region_code=owner)
        self.audit(actor, "studio_draft_created", f"{name}({code})",
                   {"draft_id": draft.id, "owner_region_code": owner, "template": template["id"]},
                   client_addr=client_addr)
        return draft

    def simple_model(self, actor: Actor, draft_id: int) -> tuple[ProcedureDraft, Model | None, str | None]:
        """(draft, its simple model, None) or (draft, None, why it stays in BPMN mode)."""
        draft = self.get_draft(actor, draft_id)
        try:
            return draft, decompile(draft.files, self.simple_context(self.draft_owner(draft))), None
        except OutsideSubset as exc:
            return draft, None, str(exc)

    def save_simple(self, actor: Actor, draft_id: int, data: Any, lock_version: int | None,
                    client_addr: str | None = None) -> tuple[ProcedureDraft, Model, list[dict[str, Any]]]:
        """Compile a model into the draft (saved even when the checks find problems, so unfinished work is
        kept); return (draft, the model as now read from the draft, the checks' problems by block).

        :raises ValidationError: the model itself is invalid; nothing changes.
        :raises ConflictError: someone saved the draft since lock_version.
        """
        draft = self.get_draft(actor, draft_id)
        owner = self.draft_owner(draft)
        ctx = self.simple_context(owner)
        model = parse_model(data, draft.code)
        files = compile_model(model, ctx)
        kept = {k: v for k, v in draft.files.items() if k.startswith("template/") and k not in files}
        draft = self.save_draft(actor, draft_id, {**files, **kept}, lock_version, client_addr=client_addr)
        try:
            model = decompile(draft.files, ctx)
        except OutsideSubset as exc:  # the compiler's own output is always inside the subset
            raise DefinitionError("简易模型无法读回", [(draft.code, str(exc))]) from exc
        problems = [problem_dict(p, model) for p in self.validate_files(draft.files, owner)]
        return draft, model, problems
