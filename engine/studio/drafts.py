"""Studio drafts: the procedures overview, new, copied and opened drafts, saving and discarding.

A *draft* holds the files a deployed version holds (``procedure.json``, ``bpmn/x.bpmn``,
``dmn/x.dmn``, ``form/<formKey>``, ``template/<name>``: the notice catalog and templates, deployed
with the rest, so a procedure made here issues its own notices). Everything a draft contains is untrusted
input: saving checks the file set's shape and that every file is well-formed (XML with DTDs, entities
and network access off); the deploy rules are the procedure checks (validation.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, DefinitionError, NotFoundError, ValidationError
from engine.models import Case, CaseStatus, Procedure, ProcedureDraft, ProcedureVersion
from engine.procedures.checks.bundle import q
from engine.procedures.checks.files import check_file_set, parse_well_formed
from engine.procedures.checks.rules import PROCEDURE_CODE_RE, PROCEDURE_CODE_RULE, SUBJECT_KINDS
from engine.procedures.definitions import safe_xml
from engine.studio.ownership import SYSTEM_OWNER_NAME, StudioOwnership

DRAFT_STATUSES = ("editing", "deployed", "discarded")


@dataclass
class VersionSummary:
    version: ProcedureVersion
    status: str  # deployed (new cases use it) or retired (only its running cases)
    running: int
    total: int


@dataclass
class ProcedureSummary:
    procedure: Procedure
    versions: list[VersionSummary]
    drafts: list[ProcedureDraft]
    owner_name: str = SYSTEM_OWNER_NAME
    may_change: bool = False  # open as draft, export, migrate (may_change_procedure)
    may_copy: bool = False  # copy under a new code owned by the admin's region


# ----------------------------------------------------------------------------- empty diagram
def empty_bpmn(process_id: str, name: str) -> str:
    """An empty executable process with a diagram plane: what a new draft starts from."""
    from xml.sax.saxutils import quoteattr

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
        'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
        'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
        f'id="Definitions_{process_id}" targetNamespace="http://xiangflow.cn/bpmn" exporter="XiangFlow Studio" '
        'exporterVersion="1.0">\n'
        f'  <bpmn:process id="{process_id}" name={quoteattr(name)} isExecutable="true" />\n'
        f'  <bpmndi:BPMNDiagram id="BPMNDiagram_{process_id}">\n'
        f'    <bpmndi:BPMNPlane id="BPMNPlane_{process_id}" bpmnElement="{process_id}" />\n'
        '  </bpmndi:BPMNDiagram>\n'
        '</bpmn:definitions>\n'
    )



def copy_files(files: dict[str, str], code: str, name: str) -> dict[str, str]:
    """A version's files as a new procedure: procedure.json with the new code and name (form keys and the
    process id may keep the source's names; nothing requires them to match the code)."""
    manifest = json.loads(files["procedure.json"])
    manifest.update(code=code, name=name)
    return {**files, "procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2)}


def _sync_process_id(files: dict[str, str]) -> dict[str, str]:
    """Keep procedure.json's process_id pointing at the diagram's process when there is exactly one
    (bpmn-js keeps the process id when a pool is drawn, but an imported diagram may differ)."""
    bpmn_key = next(k for k in files if k.startswith("bpmn/"))
    root = safe_xml(files[bpmn_key], bpmn_key)
    processes = [p.get("id") for p in root.findall(q("process"))]
    try:
        manifest = json.loads(files["procedure.json"])
    except ValueError:
        return files
    if isinstance(manifest, dict) and len(processes) == 1 and manifest.get("process_id") != processes[0]:
        manifest["process_id"] = processes[0]
        files = {**files, "procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2)}
    return files



class StudioDrafts(StudioOwnership):
    """Overview and drafts."""

    # -- overview
    def overview(self, actor: Actor) -> list[ProcedureSummary]:
        """The procedures this admin may change or whose cases run in their regions (shipped ones included),
        each with its owner, what the admin may do with it, its versions (deployed = used by new cases,
        retired = older), running and total case counts per version in the admin's regions, and the open
        drafts the admin may change; drafts of new procedures last."""
        self.require_admin(actor)
        counts: dict[tuple[int, str], int] = {}
        mine = or_(*[Case.region_code.startswith(g.prefix) for g in actor.admin_grants])
        for version_id, status, count in self.session.execute(
                select(Case.procedure_version_id, Case.status, func.count(Case.id)).where(mine)
                .group_by(Case.procedure_version_id, Case.status)):
            key = (version_id, "running" if status == CaseStatus.running else "other")
            counts[key] = counts.get(key, 0) + count
        drafts = self.drafts(actor)
        summaries = []
        for procedure in self.session.scalars(select(Procedure).order_by(Procedure.code)):
            owner = procedure.owner_region_code
            may_change = self.may_change(actor, owner)
            if not (may_change or actor.may_use_procedure(owner)):
                continue  # another region's procedure: not this admin's business
            versions = []
            for index, version in enumerate(reversed(procedure.versions)):
                running = counts.get((version.id, "running"), 0)
                versions.append(VersionSummary(version, "deployed" if index == 0 else "retired", running,
                                               running + counts.get((version.id, "other"), 0)))
            summaries.append(ProcedureSummary(procedure, versions, [d for d in drafts if d.code == procedure.code],
                                              self.owner_name(owner), may_change, may_change or owner is None))
        known = {s.procedure.code for s in summaries}
        for code in sorted({d.code for d in drafts} - known):
            first = next(d for d in drafts if d.code == code)
            summaries.append(ProcedureSummary(Procedure(code=code, name=first.name), [],
                                              [d for d in drafts if d.code == code],
                                              self.owner_name(first.owner_region_code), True, False))
        return summaries

    def drafts(self, actor: Actor) -> list[ProcedureDraft]:
        """The open drafts this admin may change (each draft's scope is ``draft_owner``)."""
        self.require_admin(actor)
        rows = self.session.scalars(select(ProcedureDraft).where(ProcedureDraft.status != "discarded")
                                    .order_by(ProcedureDraft.updated_at.desc(), ProcedureDraft.id.desc()))
        return [d for d in rows if self.may_change(actor, self.draft_owner(d))]

    def version(self, actor: Actor, version_id: int) -> ProcedureVersion:
        """A version of a procedure this admin may change.

        :raises NotFoundError: no such version.
        :raises ForbiddenError: the procedure belongs to another region, or is shipped and the admin
            does not cover all regions.
        """
        self.require_admin(actor)
        version = self.session.get(ProcedureVersion, version_id)
        if version is None:
            raise NotFoundError("流程版本不存在")
        self._require_change(actor, version.procedure.owner_region_code, f"流程「{version.procedure.name}」")
        return version

    # -- drafts
    def get_draft(self, actor: Actor, draft_id: int) -> ProcedureDraft:
        self.require_admin(actor)
        draft = self.session.get(ProcedureDraft, draft_id)
        if draft is None or draft.status == "discarded":
            raise NotFoundError("草稿不存在")
        self._require_change(actor, self.draft_owner(draft), f"草稿「{draft.name}」({draft.code})")
        return draft

    def _new_draft(self, actor: Actor, code: str, name: str, files: dict[str, str], source: str,
                   base: ProcedureVersion | None = None, owner_region_code: str | None = None) -> ProcedureDraft:
        now = self.clock.now()
        draft = ProcedureDraft(code=code, name=name[:120], status="editing", source=source, files=files,
                               owner_region_code=owner_region_code,
                               base_version_id=base.id if base else None, lock_version=1,
                               created_by_id=actor.user_id, updated_by_id=actor.user_id,
                               created_at=now, updated_at=now)
        self.session.add(draft)
        self.session.flush()
        return draft

    def _check_new_code(self, code: str, name: str, errors: dict[str, str]) -> None:
        if not PROCEDURE_CODE_RE.fullmatch(code):
            errors["code"] = PROCEDURE_CODE_RULE
        elif code in self.known_procedures():
            errors["code"] = "已有此代码的流程:请在列表中打开它的版本来修改,或换一个代码"
        if not name or len(name) > 120:
            errors["name"] = "请填写流程名称(不超过 120 字)"

    def create_draft(self, actor: Actor, code: str, name: str, subject_kind: str = "household",
                     client_addr: str | None = None, owner_region_code: str | None = None) -> ProcedureDraft:
        """A new procedure from an empty diagram, owned by owner_region_code (one of ``owner_choices``).

        :raises ValidationError: bad code, name or owner, or a procedure with that code exists (open it instead).
        """
        self.require_admin(actor)
        code, name = (code or "").strip(), (name or "").strip()
        errors: dict[str, str] = {}
        self._check_new_code(code, name, errors)
        if subject_kind not in SUBJECT_KINDS:
            errors["subject_kind"] = "办理对象只能是农户或项目"
        if errors:
            raise ValidationError("无法新建流程", errors)
        owner = self._new_owner(actor, owner_region_code)
        manifest = {"code": code, "name": name, "subject_kind": subject_kind, "process_id": code,
                    "description": "", "settings": {"day_kind": "natural"}}
        files = {"procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2),
                 f"bpmn/{code}.bpmn": empty_bpmn(code, name)}
        draft = self._new_draft(actor, code, name, files, "new", owner_region_code=owner)
        self.audit(actor, "studio_draft_created", f"{name}({code})",
                   {"draft_id": draft.id, "owner_region_code": owner}, client_addr=client_addr)
        return draft

    def copy_version(self, actor: Actor, version_id: int, code: str, name: str, client_addr: str | None = None,
                     owner_region_code: str | None = None) -> ProcedureDraft:
        """A draft of a new procedure (code, name, owned by one of ``owner_choices``) holding a copy of a
        deployed version: how a county admin adapts a shipped procedure.

        The copy keeps the diagram, forms, decisions and notice templates; only ``procedure.json`` gets the new code and name.

        :raises NotFoundError: no such version.
        :raises ForbiddenError: the version belongs to a region the admin may not change.
        :raises ValidationError: bad code, name or owner, or the code is taken.
        """
        self.require_admin(actor)
        version = self.session.get(ProcedureVersion, version_id)
        if version is None:
            raise NotFoundError("流程版本不存在")
        source_owner = version.procedure.owner_region_code
        if source_owner is not None:
            self._require_change(actor, source_owner, f"流程「{version.procedure.name}」")
        code, name = (code or "").strip(), (name or "").strip()
        errors: dict[str, str] = {}
        self._check_new_code(code, name, errors)
        if errors:
            raise ValidationError("无法复制流程", errors)
        owner = self._new_owner(actor, owner_region_code)
        files = copy_files(self.definitions.files(version), code, name)
        draft = self._new_draft(actor, code, name, files, "version", version, owner_region_code=owner)
        self.audit(actor, "studio_copied", f"{version.procedure.name} v{version.version} → {name}({code})",
                   {"draft_id": draft.id, "version_id": version.id, "from": version.procedure.code,
                    "from_owner_region_code": source_owner, "owner_region_code": owner}, client_addr=client_addr)
        return draft

    def open_version(self, actor: Actor, version_id: int, client_addr: str | None = None) -> ProcedureDraft:
        """A draft holding a copy of a deployed version (shipped procedures included), its notice templates too."""
        version = self.version(actor, version_id)
        files = dict(self.definitions.files(version))
        owner = version.procedure.owner_region_code
        draft = self._new_draft(actor, version.procedure.code, version.procedure.name, files, "version", version,
                                owner_region_code=owner)
        self.audit(actor, "studio_draft_opened", f"{version.procedure.name} v{version.version}",
                   {"draft_id": draft.id, "version_id": version.id, "owner_region_code": owner},
                   client_addr=client_addr)
        return draft

    def save_draft(self, actor: Actor, draft_id: int, files: Any, lock_version: int | None,
                   client_addr: str | None = None) -> ProcedureDraft:
        """Replace a draft's files. Well-formedness is checked here (hostile XML, broken JSON are refused
        and nothing changes); the deploy rules are checked by ``validate``.

        :raises ConflictError: someone saved the draft since lock_version.
        :raises DefinitionError: the files are not acceptable at all.
        """
        draft = self.get_draft(actor, draft_id)
        if lock_version is not None and lock_version != draft.lock_version:
            raise ConflictError("草稿已被他人修改,请刷新后再保存")
        files = check_file_set(files)
        parse_well_formed(files)
        files = _sync_process_id(files)
        manifest = json.loads(files["procedure.json"])
        if not isinstance(manifest, dict) or manifest.get("code") != draft.code:
            raise DefinitionError("草稿文件无效", [("procedure.json", f"流程代码不能修改(应为 {draft.code})")])
        draft.files = files
        draft.name = str(manifest.get("name") or draft.name)[:120]
        draft.lock_version += 1
        draft.status = "editing"
        draft.updated_by_id = actor.user_id
        draft.updated_at = self.clock.now()
        self.session.flush()
        self.audit(actor, "studio_draft_saved", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "lock_version": draft.lock_version, "files": sorted(files),
                    "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)
        return draft

    def discard_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> None:
        draft = self.get_draft(actor, draft_id)
        draft.status = "discarded"
        draft.updated_at = self.clock.now()
        self.audit(actor, "studio_draft_discarded", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)

