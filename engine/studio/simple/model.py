"""The simple designer's model (docs/simple-designer.md): a procedure as meta + a vertical list of blocks.

``parse_model`` turns untrusted JSON into a ``Model`` or raises ``ValidationError`` with every problem by
path, in Chinese, naming the block; ``to_json`` writes the normalised JSON back (what GET returns). The
shape is checked here (types, sizes, depth, unknown keys, ids); what needs the server's vocabulary (roles,
notice kinds, procedures, field references) is ``semantics.py``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from engine.core.errors import ValidationError
from engine.procedures.checks.rules import ALLOWED_ACTIONS, CASE_STATUS_VALUES, DAY_KINDS, SUBJECT_KINDS

MODEL_VERSION = 1
BLOCK_ID_RE = re.compile(r"(?!.*__)[A-Za-z][A-Za-z0-9_]{0,39}")  # "__" joins a block id to its helper elements' suffixes
FIELD_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_BLOCKS = 200
MAX_DEPTH = 5  # branches inside branches; deeper models would pass the edge's JSON depth limit (32)
MAX_MODEL_BYTES = 512 * 1024
MAX_NAME = 60
MAX_BRANCHES = 8
MAX_CONDITIONS = 10
MAX_COMPONENTS = 100
MAX_AMOUNT = 365
MAX_TEXT = 2000
MAX_LABELS = 10

KINDS = ("start", "approval", "condition", "parallel", "cc", "notice", "wait", "subprocess", "end")
KIND_NAMES = {"start": "发起", "approval": "审批", "condition": "条件分支", "parallel": "并行分支", "cc": "抄送",
              "notice": "公示", "wait": "定时/等待", "subprocess": "子流程", "end": "结束"}
SIGN_MODES = ("single", "all", "any", "ratio")
SIGN_MODE_NAMES = {"single": "一人审批", "all": "会签(全部同意)", "any": "或签(一人同意即可)", "ratio": "按比例会签"}
SIGNATURES = ("required", "optional")
CONDITION_OPS = ("==", "!=", ">", ">=", "<", "<=", "contains")
JOINS = ("and", "or")
UNIT_NAMES = {"natural": "自然日", "working": "工作日"}

# the keys each kind accepts (besides id, kind, name)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "start": ("role", "form"),
    "approval": ("role", "assignee_field", "sign", "time_limit", "actions", "opinion_required", "signature",
                 "attachments", "batch_approval", "form"),
    "condition": ("branches", "otherwise"),
    "parallel": ("branches",),
    "cc": ("role",),
    "notice": ("role", "notice_kind", "period", "objection_return_to"),
    "wait": ("duration",),
    "subprocess": ("procedure", "pass_data"),
    "end": ("status",),
}
META_FIELDS = ("code", "name", "subject_kind", "description", "settings")
SETTINGS_FIELDS = ("day_kind", "complaint_phone", "one_running_case_per_subject")


@dataclass
class Duration:
    amount: int
    unit: str  # natural | working

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "unit": self.unit}


@dataclass
class Condition:
    field: str
    op: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value}


@dataclass
class Branch:
    id: str
    name: str
    blocks: list[Block] = field(default_factory=list)
    join: str = "and"
    conditions: list[Condition] = field(default_factory=list)

    def to_json(self, with_conditions: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if with_conditions:
            out.update(join=self.join, conditions=[c.to_json() for c in self.conditions])
        out["blocks"] = [b.to_json() for b in self.blocks]
        return out


@dataclass
class Block:
    id: str
    kind: str
    name: str
    role: str | None = None
    form: dict[str, Any] | None = None
    assignee_field: str | None = None
    sign_mode: str = "single"
    sign_percent: int | None = None
    time_limit: Duration | None = None
    actions: tuple[str, ...] = ("approve",)
    opinion_required: bool = False
    signature: str | None = None
    attachments: tuple[str, ...] | None = None  # None: general attachments; (): none
    batch_approval: bool = False
    branches: list[Branch] = field(default_factory=list)
    otherwise: Branch | None = None
    notice_kind: str | None = None
    period: Duration | None = None
    objection_return_to: str | None = None
    duration: Duration | None = None
    procedure: str | None = None
    pass_data: tuple[str, ...] = ()
    status: str | None = None

    @property
    def label(self) -> str:
        return f"{KIND_NAMES[self.kind]}「{self.name}」"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "name": self.name}
        for key in KIND_FIELDS[self.kind]:
            if key == "sign":
                out["sign"] = {"mode": self.sign_mode, **({"percent": self.sign_percent}
                                                           if self.sign_mode == "ratio" else {})}
            elif key in ("time_limit", "period", "duration"):
                value = getattr(self, key)
                out[key] = value.to_json() if value else None
            elif key == "branches":
                out["branches"] = [b.to_json(self.kind == "condition") for b in self.branches]
            elif key == "otherwise":
                out["otherwise"] = self.otherwise.to_json(False) if self.otherwise else None
            elif key in ("actions", "pass_data"):
                out[key] = list(getattr(self, key))
            elif key == "attachments":
                out[key] = None if self.attachments is None else list(self.attachments)
            else:
                out[key] = getattr(self, key)
        return out

    def children(self) -> list[Branch]:
        return [*self.branches, *([self.otherwise] if self.otherwise else [])]


@dataclass
class Meta:
    code: str
    name: str
    subject_kind: str = "household"
    description: str = ""
    day_kind: str = "natural"
    complaint_phone: str = ""
    one_running_case_per_subject: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "subject_kind": self.subject_kind,
                "description": self.description,
                "settings": {"day_kind": self.day_kind, "complaint_phone": self.complaint_phone,
                             "one_running_case_per_subject": self.one_running_case_per_subject}}


@dataclass
class Model:
    meta: Meta
    blocks: list[Block]

    def to_json(self) -> dict[str, Any]:
        return {"version": MODEL_VERSION, "meta": self.meta.to_json(), "blocks": [b.to_json() for b in self.blocks]}

    def walk(self) -> list[Block]:
        """Every block, depth first in reading order."""
        found: list[Block] = []

        def visit(blocks: list[Block]) -> None:
            for block in blocks:
                found.append(block)
                for branch in block.children():
                    visit(branch.blocks)
        visit(self.blocks)
        return found


def new_id() -> str:
    """A fresh block id (``b_`` + 8 base-36 characters)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "b_" + "".join(secrets.choice(alphabet) for _ in range(8))


# ----------------------------------------------------------------------------- parsing
class _Reader:
    """Reads untrusted JSON, collecting errors by path instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.ids: set[str] = set()
        self.count = 0

    def err(self, path: str, message: str) -> None:
        if len(self.errors) < 100:
            self.errors.setdefault(path, message)

    def obj(self, value: Any, path: str, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.err(path, f"{what}必须是对象")
            return {}
        unknown = [k for k in value if k not in allowed]
        if unknown:
            self.err(path, f"{what}有不认识的项:{'、'.join(str(k)[:40] for k in unknown[:5])}")
        return value

    def text(self, value: Any, path: str, what: str, limit: int = MAX_NAME, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.err(path, f"请填写{what}")
            return ""
        value = value.strip()
        if len(value) > limit:
            self.err(path, f"{what}不能超过 {limit} 字")
        elif any(ord(c) < 32 and c not in "\n\t" or 0xD800 <= ord(c) <= 0xDFFF for c in value):
            self.err(path, f"{what}含有不可见的控制字符")
        return value[:limit]

    def flag(self, value: Any, path: str, what: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.err(path, f"{what}只能是“是”或“否”")
            return False
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], what: str) -> str:
        if value not in choices:
            self.err(path, f"{what}无效")
            return choices[0]
        return str(value)

    def key(self, value: Any, path: str, what: str) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not FIELD_KEY_RE.fullmatch(value):
            self.err(path, f"{what}必须是表单字段名(小写字母开头的字母、数字、下划线)")
            return None
        return value

    def duration(self, value: Any, path: str, what: str, required: bool) -> Duration | None:
        if value is None:
            if required:
                self.err(path, f"请填写{what}")
            return None
        raw = self.obj(value, path, ("amount", "unit"), what)
        amount, unit = raw.get("amount"), raw.get("unit")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
            self.err(f"{path}.amount", f"{what}应为 1–{MAX_AMOUNT} 的整数天数")
            amount = 1
        if unit not in DAY_KINDS:
            self.err(f"{path}.unit", f"{what}的单位只能是自然日或工作日")
            unit = "natural"
        return Duration(int(amount), str(unit))

    def block_id(self, value: Any, path: str) -> str:
        if value is None or value == "":
            value = new_id()
            while value in self.ids:
                value = new_id()
        elif not isinstance(value, str) or not BLOCK_ID_RE.fullmatch(value) or value.endswith("_"):
            self.err(path, "步骤编号无效(由系统生成,请勿修改)")
            value = new_id()
        if value in self.ids:
            self.err(path, "步骤编号重复(由系统生成,请勿复制)")
        self.ids.add(value)
        return value


def parse_model(data: Any, code: str | None = None) -> Model:
    """The model in data, its missing block ids generated.

    :raises ValidationError: the shape is wrong; ``errors`` maps each path to a Chinese message.
    """
    r = _Reader()
    raw = r.obj(data, "model", ("version", "meta", "blocks"), "简易模型")
    if raw.get("version", MODEL_VERSION) != MODEL_VERSION:
        r.err("version", f"简易模型版本只能是 {MODEL_VERSION}")
    meta = _meta(r, raw.get("meta"), code)
    blocks = _blocks(r, raw.get("blocks"), "blocks", 0, top=True)
    if r.errors:
        raise ValidationError("简易模型有误", r.errors)
    return Model(meta, blocks)


def _meta(r: _Reader, value: Any, code: str | None) -> Meta:
    raw = r.obj(value, "meta", META_FIELDS, "流程信息")
    settings = r.obj(raw.get("settings") or {}, "meta.settings", SETTINGS_FIELDS, "流程设置")
    meta = Meta(code=code or str(raw.get("code") or ""), name=r.text(raw.get("name"), "meta.name", "流程名称", 120))
    if code is not None and raw.get("code") not in (None, code):
        r.err("meta.code", f"流程代码不能修改(应为 {code})")
    meta.subject_kind = r.choice(raw.get("subject_kind", "household"), "meta.subject_kind", SUBJECT_KINDS, "办理对象")
    meta.description = r.text(raw.get("description"), "meta.description", "流程说明", MAX_TEXT, required=False)
    meta.day_kind = r.choice(settings.get("day_kind", "natural"), "meta.settings.day_kind", DAY_KINDS, "时限计算方式")
    meta.complaint_phone = r.text(settings.get("complaint_phone"), "meta.settings.complaint_phone", "监督电话", 40,
                                  required=False)
    meta.one_running_case_per_subject = r.flag(settings.get("one_running_case_per_subject"),
                                               "meta.settings.one_running_case_per_subject", "同一对象只能有一件在办")
    return meta


def _blocks(r: _Reader, value: Any, path: str, depth: int, top: bool = False) -> list[Block]:
    if depth > MAX_DEPTH:
        r.err(path, f"分支嵌套不能超过 {MAX_DEPTH} 层")
        return []
    if not isinstance(value, list):
        r.err(path, "步骤列表必须是数组")
        return []
    blocks: list[Block] = []
    for index, item in enumerate(value):
        r.count += 1
        if r.count > MAX_BLOCKS:
            r.err(path, f"步骤总数不能超过 {MAX_BLOCKS} 个")
            break
        block = _block(r, item, f"{path}[{index}]", depth)
        if block is not None:
            blocks.append(block)
    for index, block in enumerate(blocks):
        where = f"{path}[{index}]"
        if block.kind == "start" and not (top and index == 0):
            r.err(where, f"{block.label}只能是流程的第一步")
        if block.kind == "end" and index != len(blocks) - 1:
            r.err(where, f"{block.label}之后不能再有步骤")
        if index > 0 and ends(blocks[index - 1]):
            r.err(where, f"{block.label}前面的分支都已结束,它不会被执行")
    if top:
        if not blocks or blocks[0].kind != "start":
            r.err(path, "流程的第一步必须是“发起”")
        elif not ends(blocks[-1]):
            r.err(path, "流程的最后一步必须是“结束”")
    return blocks


def ends(block: Block) -> bool:
    """Whether a block finishes the case on every path (an end, or a branching whose every branch ends)."""
    if block.kind == "end":
        return True
    if block.kind in ("condition", "parallel") and block.children():
        return all(b.blocks and ends(b.blocks[-1]) for b in block.children())
    return False


def _block(r: _Reader, item: Any, path: str, depth: int) -> Block | None:
    kind = item.get("kind") if isinstance(item, dict) else None
    if kind not in KINDS:
        r.err(f"{path}.kind", "步骤类型无效")
        return None
    raw = r.obj(item, path, ("id", "kind", "name", *KIND_FIELDS[kind]), f"{KIND_NAMES[kind]}步骤")
    block = Block(id=r.block_id(raw.get("id"), f"{path}.id"), kind=kind,
                  name=r.text(raw.get("name"), f"{path}.name", f"{KIND_NAMES[kind]}步骤的名称"))
    label = block.label
    if kind in ("start", "approval", "cc", "notice"):
        role = raw.get("role", "village_cadre" if kind == "start" else None)
        if not isinstance(role, str) or not role:
            r.err(f"{path}.role", f"{label}:请选择办理角色")
        else:
            block.role = role[:40]
    if kind in ("start", "approval"):
        form = raw.get("form")
        if form is not None:
            if not isinstance(form, dict) or not isinstance(form.get("components"), list):
                r.err(f"{path}.form", f"{label}:表单必须含有字段列表")
            elif len(form["components"]) > MAX_COMPONENTS:
                r.err(f"{path}.form", f"{label}:表单字段不能超过 {MAX_COMPONENTS} 个")
            else:
                block.form = form
    if kind == "approval":
        _approval(r, raw, path, block)
    elif kind in ("condition", "parallel"):
        _branching(r, raw, path, block, depth)
    elif kind == "notice":
        if not isinstance(raw.get("notice_kind"), str) or not raw.get("notice_kind"):
            r.err(f"{path}.notice_kind", f"{label}:请选择公示公告的种类")
        else:
            block.notice_kind = str(raw["notice_kind"])[:64]
        block.period = r.duration(raw.get("period"), f"{path}.period", f"{label}的公示期", required=True)
        target = raw.get("objection_return_to")
        if target is not None and (not isinstance(target, str) or not BLOCK_ID_RE.fullmatch(target)):
            r.err(f"{path}.objection_return_to", f"{label}:有异议时退回的步骤无效")
        else:
            block.objection_return_to = target
    elif kind == "wait":
        block.duration = r.duration(raw.get("duration"), f"{path}.duration", f"{label}的等待时长", required=True)
    elif kind == "subprocess":
        code = raw.get("procedure")
        if not isinstance(code, str) or not code:
            r.err(f"{path}.procedure", f"{label}:请选择要发起的流程")
        else:
            block.procedure = code[:64]
        keys = raw.get("pass_data") or []
        if not isinstance(keys, list) or len(keys) > 50:
            r.err(f"{path}.pass_data", f"{label}:传递的字段必须是字段名列表(最多 50 个)")
        else:
            block.pass_data = tuple(dict.fromkeys(
                k for i, v in enumerate(keys) if (k := r.key(v, f"{path}.pass_data[{i}]", f"{label}传递的字段"))))
    elif kind == "end":
        block.status = r.choice(raw.get("status", "approved"), f"{path}.status", CASE_STATUS_VALUES,
                                f"{label}的案件结果")
    return block


def _approval(r: _Reader, raw: dict[str, Any], path: str, block: Block) -> None:
    label = block.label
    block.assignee_field = r.key(raw.get("assignee_field"), f"{path}.assignee_field", f"{label}的指定人员字段")
    sign = r.obj(raw.get("sign") or {"mode": "single"}, f"{path}.sign", ("mode", "percent"), f"{label}的审批方式")
    block.sign_mode = r.choice(sign.get("mode", "single"), f"{path}.sign.mode", SIGN_MODES, f"{label}的审批方式")
    if block.sign_mode == "ratio":
        percent = sign.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            r.err(f"{path}.sign.percent", f"{label}:通过比例应为 1–100 的整数(百分比)")
        else:
            block.sign_percent = percent
    if block.sign_mode != "single" and block.assignee_field:
        r.err(f"{path}.assignee_field", f"{label}:会签/或签由角色的全部人员办理,不能再指定一个人")
    block.time_limit = r.duration(raw.get("time_limit"), f"{path}.time_limit", f"{label}的办理时限", required=False)
    actions = raw.get("actions", ["approve", "reject", "return"])
    if not isinstance(actions, list) or not all(a in ALLOWED_ACTIONS for a in actions) or "approve" not in actions:
        r.err(f"{path}.actions", f"{label}:允许的操作只能从 通过、不通过、退回 中选,且必须包含“通过”")
    else:
        block.actions = tuple(a for a in ALLOWED_ACTIONS if a in actions)
    block.opinion_required = r.flag(raw.get("opinion_required"), f"{path}.opinion_required", f"{label}的必须填写意见")
    signature = raw.get("signature")
    if signature is not None and signature not in SIGNATURES:
        r.err(f"{path}.signature", f"{label}:农户签字只能是 必须 或 可选")
    else:
        block.signature = signature
    attachments = raw.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or len(attachments) > MAX_LABELS:
            r.err(f"{path}.attachments", f"{label}:附件类别最多 {MAX_LABELS} 个")
        else:
            labels = [r.text(a, f"{path}.attachments[{i}]", f"{label}的附件类别", 16)
                      for i, a in enumerate(attachments)]
            if len(set(labels)) != len(labels):
                r.err(f"{path}.attachments", f"{label}:附件类别重复")
            elif any(a in ("file", "signature", "none") for a in labels):
                r.err(f"{path}.attachments", f"{label}:附件类别不能叫 file、signature 或 none")
            block.attachments = tuple(labels)
    block.batch_approval = r.flag(raw.get("batch_approval"), f"{path}.batch_approval", f"{label}的允许批量审批")


def _branching(r: _Reader, raw: dict[str, Any], path: str, block: Block, depth: int) -> None:
    label = block.label
    conditional = block.kind == "condition"
    branches = raw.get("branches")
    least = 1 if conditional else 2
    if not isinstance(branches, list) or not least <= len(branches) <= MAX_BRANCHES:
        r.err(f"{path}.branches", f"{label}应有 {least}–{MAX_BRANCHES} 个分支")
        branches = []
    allowed = ("id", "name", "join", "conditions", "blocks") if conditional else ("id", "name", "blocks")
    for index, item in enumerate(branches):
        where = f"{path}.branches[{index}]"
        b = r.obj(item, where, allowed, f"{label}的分支")
        branch = Branch(id=r.block_id(b.get("id"), f"{where}.id"),
                        name=r.text(b.get("name"), f"{where}.name", f"{label}的分支名称"),
                        blocks=_blocks(r, b.get("blocks", []), f"{where}.blocks", depth + 1))
        if conditional:
            branch.join = r.choice(b.get("join", "and"), f"{where}.join", JOINS, f"{label}的条件组合方式")
            branch.conditions = _conditions(r, b.get("conditions"), f"{where}.conditions", f"{label}的分支「{branch.name}」")
        elif any(x.kind == "end" for x in branch.blocks):
            r.err(f"{where}.blocks", f"{label}的分支「{branch.name}」不能以“结束”收尾:并行分支都要汇合")
        block.branches.append(branch)
    if conditional:
        other = r.obj(raw.get("otherwise") or {"name": "其他情况", "blocks": []}, f"{path}.otherwise",
                      ("id", "name", "blocks"), f"{label}的“否则”分支")
        block.otherwise = Branch(id=r.block_id(other.get("id"), f"{path}.otherwise.id"),
                                 name=r.text(other.get("name", "其他情况"), f"{path}.otherwise.name", "“否则”分支的名称"),
                                 blocks=_blocks(r, other.get("blocks", []), f"{path}.otherwise.blocks", depth + 1))


def _conditions(r: _Reader, value: Any, path: str, label: str) -> list[Condition]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CONDITIONS:
        r.err(path, f"{label}应有 1–{MAX_CONDITIONS} 个条件")
        return []
    found = []
    for index, item in enumerate(value):
        c = r.obj(item, f"{path}[{index}]", ("field", "op", "value"), f"{label}的条件")
        key = r.key(c.get("field"), f"{path}[{index}].field", f"{label}的条件字段")
        if key is None:
            r.err(f"{path}[{index}].field", f"{label}:请选择条件的字段")
        op = r.choice(c.get("op"), f"{path}[{index}].op", CONDITION_OPS, f"{label}的比较方式")
        val = c.get("value")
        if isinstance(val, str):
            val = r.text(val, f"{path}[{index}].value", f"{label}的比较值", 200, required=False)
        elif isinstance(val, float) and (val != val or val in (float("inf"), float("-inf"))):
            r.err(f"{path}[{index}].value", f"{label}:比较值无效")
        elif not isinstance(val, (bool, int, float)) or (isinstance(val, int) and abs(val) > 10**15):
            r.err(f"{path}[{index}].value", f"{label}:比较值只能是数字、文字或是/否")
        found.append(Condition(key or "x", op, val))
    return found
