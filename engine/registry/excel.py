"""Excel import and export of the registry (openpyxl): templates with Chinese headers, every row checked,
all or nothing.

A household workbook has a sheet 农户 (one row per household) and optionally a sheet 家庭成员 (one row per
member, tied to its household by 户主身份证号); a project workbook has a sheet 项目. Import checks every row
with the registry's own checks (``RegistryService.check``: ID check digit, region inside the importer's
jurisdiction, categories) plus duplicates inside the file and against the registry; one bad row and
nothing is stored (``ImportRefusedError`` lists sheet, row, column and message). A good file is stored in
the caller's one transaction.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy import select

from engine.access.assignment import Actor
from engine.core.errors import ValidationError
from engine.models import Region, Subject
from engine.models.audit import AuditLog
from engine.models.registry import SubjectMember
from engine.registry import catalog
from engine.registry.service import RegistryService, SubjectSearch

MAX_ROWS = 50_000
MAX_PROBLEMS = 500  # reported; counting goes on
MAX_FILE_BYTES = 10 * 1024 * 1024  # the app refuses bodies over 12 MB (MAX_CONTENT_LENGTH) anyway
MAX_UNCOMPRESSED_BYTES = 400 * 1024 * 1024

HOUSEHOLD_SHEET, MEMBER_SHEET, PROJECT_SHEET = "农户", "家庭成员", "项目"
# (header, field): the field is a top-level subject field, attrs.<key>, or a member field
HOUSEHOLD_COLUMNS = (
    ("户主姓名", "name"), ("身份证号", "id_number"), ("区划代码", "region_code"), ("家庭人口", "attrs.members"),
    ("监测对象类别", "attrs.category"), ("联系电话", "attrs.phone"), ("特殊标识", "attrs.special_flags"),
    ("帮扶责任人", "attrs.assistance_cadre"), ("住址", "attrs.address"),
)
REQUIRED_HOUSEHOLD = ("户主姓名", "身份证号", "区划代码", "家庭人口", "监测对象类别")
MEMBER_COLUMNS = (
    ("户主身份证号", "head"), ("姓名", "name"), ("身份证号", "id_number"), ("与户主关系", "relation"),
    ("劳动能力", "labour_ability"), ("健康状况", "health"), ("在校情况", "schooling"),
)
PROJECT_COLUMNS = (
    ("项目名称", "name"), ("区划代码", "region_code"), ("项目类型", "attrs.project_type"),
    ("预算(元)", "attrs.budget_yuan"), ("建设地点", "attrs.place"), ("建设内容", "attrs.content"),
    ("资金来源", "attrs.funds_source"), ("联农带农机制", "attrs.farmer_linkage"), ("主管部门", "attrs.department"),
    ("年度", "attrs.year"),
)
REQUIRED_PROJECT = ("项目名称", "区划代码", "项目类型", "预算(元)")


@dataclass
class Problem:
    sheet: str
    row: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "message": self.message}


class ImportRefusedError(ValidationError):
    """The file has bad rows (or is no workbook); nothing was stored. ``problems`` names each."""

    def __init__(self, problems: list[Problem], total: int | None = None):
        total = len(problems) if total is None else total
        first = problems[0]
        where = f"{first.sheet}第 {first.row} 行「{first.column}」" if first.row else first.sheet
        super().__init__(f"文件有 {total} 处错误,未导入任何数据(第一处:{where} {first.message})",
                         {"file": f"共 {total} 处错误"})
        self.problems = problems
        self.total = total


@dataclass
class ImportResult:
    kind: str
    count: int
    member_count: int
    stored: bool
    preview: list[dict[str, Any]] = field(default_factory=list)
    subject_ids: list[int] = field(default_factory=list)


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _code_text(value: Any) -> Any:
    """A region code typed into Excel as a number (12 digits stay exact in a double): back to text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value))
    return value


def _numeric_id(value: Any) -> bool:
    """An 18-digit ID number stored as an Excel number has lost its last digits (a double holds 15–16)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


NUMERIC_ID = "身份证号请以文本格式填写(数字格式会丢失末几位)"


class RegistryExcel:
    def __init__(self, registry: RegistryService):
        self.registry = registry
        self.session = registry.session
        self.audit = AuditLog(registry.session, registry.clock)

    # ------------------------------------------------------------------ templates and export
    def template(self, kind: str) -> bytes:
        """An empty workbook with the Chinese headers, drop-down lists and one example row."""
        wb = Workbook()
        if kind == "project":
            ws = self._sheet(wb.active, PROJECT_SHEET, PROJECT_COLUMNS, REQUIRED_PROJECT)
            self._choices(ws, "C", catalog.PROJECT_TYPES)
        else:
            ws = self._sheet(wb.active, HOUSEHOLD_SHEET, HOUSEHOLD_COLUMNS, REQUIRED_HOUSEHOLD)
            self._choices(ws, "E", catalog.HOUSEHOLD_CATEGORIES)
            members = self._sheet(wb.create_sheet(MEMBER_SHEET), MEMBER_SHEET, MEMBER_COLUMNS, ("户主身份证号", "姓名",
                                                                                                 "与户主关系"))
            self._choices(members, "D", catalog.RELATIONS)
            self._choices(members, "E", catalog.LABOUR_ABILITIES)
            self._choices(members, "F", catalog.HEALTH)
            self._choices(members, "G", catalog.SCHOOLING)
        notes = wb.create_sheet("填写说明")
        for line in _NOTES[kind if kind == "project" else "household"]:
            notes.append([line])
        notes.column_dimensions["A"].width = 100
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()

    @staticmethod
    def _sheet(ws, title: str, columns, required) -> Any:
        ws.title = title
        ws.append([h for h, _ in columns])
        for i, (header, _) in enumerate(columns, 1):
            cell = ws.cell(row=1, column=i)
            cell.font = Font(bold=True, color="B42318" if header in required else "000000")
            ws.column_dimensions[cell.column_letter].width = max(12, len(header) * 2 + 4)
            if header.endswith("身份证号") or header == "区划代码":
                ws.column_dimensions[cell.column_letter].number_format = "@"
        ws.freeze_panes = "A2"
        return ws

    @staticmethod
    def _choices(ws, column: str, choices: tuple[str, ...]) -> None:
        rule = DataValidation(type="list", formula1='"' + ",".join(choices) + '"', allow_blank=True)
        ws.add_data_validation(rule)
        rule.add(f"{column}2:{column}{MAX_ROWS}")

    def export(self, actor: Actor, search: SubjectSearch) -> bytes:
        """Every subject of search's kind inside actor's jurisdiction (all pages), as the import template lays
        them out; ID numbers masked outside the household's own village."""
        from engine.procedures.forms import mask_id

        kind = search.kind or "household"
        search = SubjectSearch(**{**search.__dict__, "kind": kind, "per_page": 1000})
        wb = Workbook(write_only=True)
        columns = PROJECT_COLUMNS if kind == "project" else HOUSEHOLD_COLUMNS
        main = wb.create_sheet(PROJECT_SHEET if kind == "project" else HOUSEHOLD_SHEET)
        main.append([h for h, _ in columns] + ["状态"])
        members_ws = wb.create_sheet(MEMBER_SHEET) if kind == "household" else None
        if members_ws is not None:
            members_ws.append([h for h, _ in MEMBER_COLUMNS])
        after = None
        while True:  # page by page from each page's last key, so the last page costs what the first does
            found = self.registry.search(actor, search, after, count=False)
            page = found.items
            members = self.registry.members_of([s.id for s in page]) if members_ws is not None else {}
            for s in page:
                show = actor.may_see_full_id(s.region_code)

                def shown(number, show=show):
                    return number if show or not number else mask_id(number)

                values = {"name": s.name, "id_number": shown(s.id_number), "region_code": s.region_code}
                row = []
                for _, key in columns:
                    value = values.get(key) if not key.startswith("attrs.") else (s.attrs or {}).get(key[6:])
                    row.append("、".join(value) if isinstance(value, list) else value)
                main.append(row + ["在册" if s.is_active else "已停用"])
                for m in members.get(s.id, []):
                    if members_ws is not None:
                        members_ws.append([shown(s.id_number), m.name, shown(m.id_number), m.relation,
                                           m.labour_ability, m.health, m.schooling])
            if found.next is None:
                break
            after = found.next
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()

    # ------------------------------------------------------------------ import
    def import_file(self, actor: Actor, kind: str, data: bytes, store: bool = True,
                    client_addr: str | None = None) -> ImportResult:
        """Check every row of an uploaded workbook and, if all are good and ``store``, register them all.

        :raises ImportRefusedError: not a workbook of this kind, or any bad row (nothing is stored).
        """
        if kind not in catalog.KINDS:
            raise ValidationError("kind 只能是 household 或 project", {"kind": "kind 只能是 household 或 project"})
        wb = self._open(data)
        try:
            rows, problems = self._read(wb, kind)
        finally:
            wb.close()
        checked = self._check_rows(actor, kind, rows, problems)
        if problems:
            raise ImportRefusedError(problems[:MAX_PROBLEMS], len(problems))
        if not checked:
            raise ImportRefusedError([Problem(HOUSEHOLD_SHEET if kind == "household" else PROJECT_SHEET, 0, "",
                                              "文件中没有数据行")])
        member_count = sum(len(v["members"]) for v in checked)
        preview = [{"name": v["name"], "region_code": v["region_code"], "attrs": v["attrs"],
                    "members": len(v["members"])} for v in checked[:20]]
        result = ImportResult(kind, len(checked), member_count, store, preview)
        if store:
            ids: list[int] = []
            for start in range(0, len(checked), 1000):
                ids.extend(s.id for s in self.registry.add_many(actor, checked[start:start + 1000], "import"))
            result.subject_ids = ids
            self.audit.record("subject_import", user_id=actor.user_id, step=f"导入{catalog.KINDS[kind]} {len(ids)} 条",
                              detail={"kind": kind, "count": len(ids), "members": member_count},
                              client_addr=client_addr)
        return result

    @staticmethod
    def _open(data: bytes):
        sheet = "文件"
        if len(data) > MAX_FILE_BYTES:
            raise ImportRefusedError([Problem(sheet, 0, "", f"文件超过 {MAX_FILE_BYTES // 1024 // 1024} MB")])
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if sum(i.file_size for i in archive.infolist()) > MAX_UNCOMPRESSED_BYTES:
                    raise ImportRefusedError([Problem(sheet, 0, "", "文件解压后过大")])
            return load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except ImportRefusedError:
            raise
        except Exception:  # openpyxl raises many kinds on a file that is not a workbook  # noqa: BLE001
            raise ImportRefusedError([Problem(sheet, 0, "", "不是有效的 Excel 文件(.xlsx)")]) from None

    def _read(self, wb, kind: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
        problems: list[Problem] = []
        title, columns, required = ((PROJECT_SHEET, PROJECT_COLUMNS, REQUIRED_PROJECT) if kind == "project"
                                    else (HOUSEHOLD_SHEET, HOUSEHOLD_COLUMNS, REQUIRED_HOUSEHOLD))
        if title not in wb.sheetnames:
            return [], [Problem(title, 0, "", f"找不到工作表「{title}」,请使用下载的模板")]
        rows = []
        for number, values in self._rows(wb[title], columns, required, problems):
            if _numeric_id(values.get("id_number")):
                problems.append(Problem(title, number, "身份证号", NUMERIC_ID))
                continue
            fields: dict[str, Any] = {"kind": kind, "attrs": {}, "members": [] if kind == "household" else None}
            for key, value in values.items():
                if key.startswith("attrs."):
                    fields["attrs"][key[6:]] = value
                else:
                    fields[key] = _code_text(value) if key == "region_code" else value
            rows.append((number, fields))
        if kind == "household" and MEMBER_SHEET in wb.sheetnames:
            by_head = {catalog.normalize_id_number(f.get("id_number")): f for _, f in rows if f.get("id_number")}
            for number, values in self._rows(wb[MEMBER_SHEET], MEMBER_COLUMNS, ("户主身份证号", "姓名", "与户主关系"),
                                             problems):
                head = values.pop("head", None)
                if _numeric_id(head) or _numeric_id(values.get("id_number")):
                    problems.append(Problem(MEMBER_SHEET, number, "户主身份证号" if _numeric_id(head) else "身份证号",
                                            NUMERIC_ID))
                    continue
                owner = by_head.get(catalog.normalize_id_number(head))
                if owner is None:
                    problems.append(Problem(MEMBER_SHEET, number, "户主身份证号", "在「农户」表中找不到该户主"))
                    continue
                owner["members"].append(values)
                owner.setdefault("_member_rows", []).append(number)
        return rows, problems

    @staticmethod
    def _rows(ws, columns, required, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
        it = ws.iter_rows(values_only=True)
        header = [(_cell(h) or "") for h in next(it, ())]
        index = {h: i for i, h in enumerate(header) if h}
        missing = [h for h in required if h not in index]
        if missing:
            problems.append(Problem(ws.title, 1, "、".join(missing), "缺少必需的列,请使用下载的模板"))
            return
        unknown = [h for h in index if h not in {c for c, _ in columns}]
        if unknown:
            problems.append(Problem(ws.title, 1, "、".join(map(str, unknown)), "模板中没有这一列"))
        for number, raw in enumerate(it, 2):
            if number > MAX_ROWS + 1:
                problems.append(Problem(ws.title, number, "", f"一次至多导入 {MAX_ROWS} 行"))
                return
            values = {key: _cell(raw[index[h]]) if h in index and index[h] < len(raw) else None for h, key in columns}
            if all(v is None for v in values.values()):
                continue
            yield number, values

    def _check_rows(self, actor: Actor, kind: str, rows, problems: list[Problem]) -> list[dict[str, Any]]:
        title, columns = (PROJECT_SHEET, PROJECT_COLUMNS) if kind == "project" else (HOUSEHOLD_SHEET, HOUSEHOLD_COLUMNS)
        header_of = {key: h for h, key in columns}
        member_header = {key: h for h, key in MEMBER_COLUMNS}
        codes = {str(f.get("region_code") or "").strip() for _, f in rows}
        regions = {r.code: r for r in self.session.scalars(select(Region).where(Region.code.in_(codes)))} if codes else {}
        cadres = self.registry.cadres_by_region(set(regions)) if kind == "household" else {}
        checked: list = []
        seen_ids: dict[str, str] = {}
        seen_names: dict[Any, int] = {}
        for number, fields in rows:
            member_rows = fields.pop("_member_rows", [])
            result = self.registry.check(actor, fields, regions=regions, cadres=cadres)
            for key, message in result.errors.items():
                problems.append(self._where(key, number, member_rows, title, header_of, member_header, message))
            values = result.values
            if result.errors:
                continue
            own = [("id_number", values["id_number"], number, title, "身份证号")] if values.get("id_number") else []
            own += [(f"members[{i}]", m["id_number"], member_rows[i] if i < len(member_rows) else number, MEMBER_SHEET,
                     "身份证号") for i, m in enumerate(values["members"]) if m.get("id_number")]
            clash = False
            for _key, number_id, row, sheet, column in own:
                if number_id == values.get("id_number") and sheet == MEMBER_SHEET:
                    continue  # the head listed among the members
                if number_id in seen_ids:
                    problems.append(Problem(sheet, row, column, f"与{seen_ids[number_id]}的身份证号重复"))
                    clash = True
                else:
                    seen_ids[number_id] = f"{sheet}第 {row} 行"
            if kind == "project":
                name_key = (values["region_code"], values["name"])
                if name_key in seen_names:
                    problems.append(Problem(title, number, "项目名称", f"与第 {seen_names[name_key]} 行是同一地区的同名项目"))
                    clash = True
                seen_names[name_key] = number
            if not clash:
                values["_row"] = number
                checked.append(values)
        self._against_registry(kind, checked, title, problems)
        for values in checked:
            values.pop("_row", None)
        return checked

    @staticmethod
    def _where(key: str, row: int, member_rows: list[int], title: str, header_of, member_header, message) -> Problem:
        if key.startswith("members["):
            index = int(key[8:key.index("]")])
            field_name = key.split(".", 1)[1] if "." in key else "name"
            member_row = member_rows[index] if index < len(member_rows) else row
            return Problem(MEMBER_SHEET, member_row, member_header.get(field_name, field_name), message)
        if key == "members":
            return Problem(MEMBER_SHEET, member_rows[0] if member_rows else row, "与户主关系", message)
        return Problem(title, row, header_of.get(key, key), message)

    def _against_registry(self, kind: str, checked: list[dict[str, Any]], title: str, problems: list[Problem]) -> None:
        """Duplicates against what is registered already: head and member ID numbers, projects by name."""
        if kind == "project":
            names = {v["name"] for v in checked}
            taken = set()
            for start in range(0, len(names), 500):
                chunk = sorted(names)[start:start + 500]
                taken |= set(self.session.execute(select(Subject.region_code, Subject.name).where(
                    Subject.kind == "project", Subject.name.in_(chunk))).tuples())
            for v in checked:
                if (v["region_code"], v["name"]) in taken:
                    problems.append(Problem(title, v["_row"], "项目名称", "本地区已登记同名项目"))
            return
        numbers = {v["id_number"] for v in checked} | {m["id_number"] for v in checked for m in v["members"]
                                                      if m.get("id_number")}
        registered: dict[str, int] = {}
        ordered = sorted(numbers)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            for number, subject_id in self.session.execute(select(Subject.id_number, Subject.id).where(
                    Subject.kind == "household", Subject.id_number.in_(chunk))):
                registered[number] = subject_id
            for number, subject_id in self.session.execute(select(SubjectMember.id_number, SubjectMember.subject_id)
                                                           .where(SubjectMember.id_number.in_(chunk))):
                registered.setdefault(number, subject_id)
        for v in checked:
            if v["id_number"] in registered:
                problems.append(Problem(title, v["_row"], "身份证号",
                                        f"已登记(对象编号 {registered[v['id_number']]})"))
            for m in v["members"]:
                if m.get("id_number") in registered and m["id_number"] != v["id_number"]:
                    problems.append(Problem(MEMBER_SHEET, v["_row"], "身份证号",
                                            f"成员 {m['name']} 已登记(对象编号 {registered[m['id_number']]})"))


_NOTES = {
    "household": [
        "农户导入模板填写说明",
        "1. 「农户」表每行一户;红色表头为必填:户主姓名、身份证号、区划代码(12 位,须为本辖区的村)、家庭人口、监测对象类别。",
        "2. 身份证号请设置为文本格式,18 位,末位校验位须正确(X 大写或小写均可)。",
        "3. 监测对象类别:" + "、".join(catalog.HOUSEHOLD_CATEGORIES) + "。",
        "4. 特殊标识(用于缓退)可填 " + "、".join(catalog.SPECIAL_FLAGS) + ",多个用顿号分隔;帮扶责任人填其登录用户名。",
        "5. 「家庭成员」表每行一人,以户主身份证号对应到「农户」表;与户主关系:" + "、".join(catalog.RELATIONS) + "。",
        "6. 文件中任何一行有错,整份文件都不会导入;请按提示的行、列改正后重新上传。",
    ],
    "project": [
        "项目导入模板填写说明",
        "1. 「项目」表每行一个项目;红色表头为必填:项目名称、区划代码(本辖区的村或乡镇)、项目类型、预算(元)。",
        "2. 项目类型:" + "、".join(catalog.PROJECT_TYPES) + "。",
        "3. 同一地区不能有同名项目。文件中任何一行有错,整份文件都不会导入。",
    ],
}
