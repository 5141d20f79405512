"""Signed PDF notices: 公示, 公告, 退出告知书, 审批表 — render, sign, store, verify.

A procedure's notices live with it in ``workflows/<procedure>/notices/`` (or in its studio draft) and
are deployed with it: every deployed version holds them as ``template/<name>`` files. ``notices.json``
lists the kinds (template, what groups cases into one notice, which office level signs, who may issue,
which cases are due, the fields the issuer fills in), the HTML templates (Jinja, sandboxed) and their
CSS (GB/T 9704-2012 layout). Notices are made from the procedure's current version (the one new cases
use), so a procedure made in the studio issues its own; a name the version does not hold is taken
from the shared layout in ``workflows/_notice_layout/`` (``_base.html``, ``gbt9704.css``). Issuing one
notice:

1. check the issuer may issue this kind for these cases with this office's key;
2. render the template with WeasyPrint (one shared FontConfiguration and pre-parsed CSS, under a
   lock: WeasyPrint makes no thread-safety promise) with a serial number, a QR code to
   ``/verify/<serial>`` and the office's seal image over the issuer's name and date;
3. sign it with pyHanko (PAdES B-B, the signature widget over the seal);
4. store the PDF and its SHA-256 in ``issued_notice`` (immutable: database triggers refuse
   UPDATE/DELETE) and record ``notice_issued`` in each covered case's history.

A kind that a BPMN user task names in its ``noticeKind`` property is issued at that step (出具村级公示,
出具县级公告): a case is due while that step is open, and issuing the notice completes the step of
every covered case through CaseService.complete_issuance, in the same transaction (a savepoint:
if rendering or signing fails, no step is completed and nothing is stored). The 公示 period the step
starts is printed on the notice from the timer rows it started, so the notice and the timer agree.

Reissuing makes a new serial that names the notice it supersedes. Batches of many groups run as a
background job (``run_batch``), one transaction per notice, with their progress in
``notice_batch``. No Flask here; the web layer and the CLI call this module.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import re
import secrets
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker, undefer

from engine.access.assignment import Actor
from engine.access.regions import PREFIX_LENGTH, ancestor_at
from engine.core import settings
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError, XiangFlowError
from engine.core.glossary import ACTION_LABELS, CASE_STATUS_LABELS
from engine.models import (
    AuditEvent,
    Case,
    IssuedNotice,
    IssuedNoticeCase,
    NoticeBatch,
    NoticeBatchStatus,
    OfficeKey,
    Procedure,
    ProcedureVersion,
    Region,
    RegionLevel,
    Role,
    TaskRow,
    TaskStatus,
    TimerRow,
    User,
)
from engine.notices.pki import SOURCE_DEMO, KeyStore
from engine.procedures.definitions import NOTICES_FILE, TEMPLATE_PREFIX, DefinitionService
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.forms import mask_id
from engine.procedures.step_rules import spec_properties
from engine.queries.inbox import merged_data
from engine.runtime.cases import ISSUE_ACTION, CaseService

log = logging.getLogger(__name__)

PUBLIC_URL_ENV = "XIANGFLOW_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
NOTICE_ACTION = "notice_issued"
SIGNATURE_FIELD = "XiangFlowSeal"
GROUP_LEVELS = {"village": RegionLevel.village, "township": RegionLevel.township, "county": RegionLevel.county}
FIELD_TYPES = ("text", "phone", "date", "integer")
SERIAL_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
MAX_REASON_LENGTH = 500
BATCH_LEASE = timedelta(minutes=5)
CSS_PX_TO_PT = 0.75
PERIOD_KEYS = ("period_start", "period_end", "period_days", "period_until")
MAX_CACHED_CATALOGS = 64  # parsed stylesheets and Jinja environments kept per process


def public_url() -> str:
    """XIANGFLOW_PUBLIC_URL: the address the QR codes point to (default the development server)."""
    return (os.environ.get(PUBLIC_URL_ENV) or DEFAULT_PUBLIC_URL).rstrip("/")


def cn_date(value: date | datetime | str | None) -> str:
    """A date as GB/T 9704 writes it: Arabic numerals without leading zeros, 2026年9月3日."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    elif isinstance(value, datetime):
        value = value.astimezone(CHINA_TZ).date()
    return f"{value.year}年{value.month}月{value.day}日"


def mask_name(name: str) -> str:
    """Keep the surname only: 张德明 → 张**."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""


def short_region_name(name: str) -> str:
    """A village's name without its committee: 跃进村民委员会 → 跃进村, 莲花社区居民委员会 → 莲花社区."""
    if name.endswith("村民委员会"):
        return name[: -len("民委员会")]
    if name.endswith("居民委员会"):
        return name[: -len("居民委员会")]
    return name


# ---------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class NoticeField:
    key: str
    label: str
    type: str = "text"
    required: bool = False
    default: Any = None
    default_setting: str | None = None
    min: int | None = None
    max: int | None = None
    help: str = ""


@dataclass(frozen=True)
class NoticeKind:
    """One kind of notice a procedure issues, as declared in its ``notices.json``."""

    procedure_code: str
    code: str
    name: str
    template: str
    title: str
    group_by: str
    public: bool
    office_level: RegionLevel
    issuer_roles: tuple[str, ...]
    due_open_steps: tuple[str, ...] = ()
    due_statuses: tuple[str, ...] = ()
    fields: tuple[NoticeField, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class NoticeCatalog:
    """The notices of one procedure version: its kinds and its notice files (``template/<name>``
    without the prefix), over the shared layout."""

    procedure_code: str
    files: dict[str, str]
    stylesheets: tuple[str, ...]
    kinds: dict[str, NoticeKind]
    content_sha256: str
    layout: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> str | None:
        """The text a template or stylesheet name means: the procedure's own file, else the shared layout's."""
        found = self.files.get(name)
        return found if found is not None else self.layout.get(name)


def layout_dir() -> Path:
    """The notice layout every procedure shares (``_base.html``, ``gbt9704.css``): a template or
    stylesheet name a procedure version does not hold itself is looked up here."""
    return settings.WORKFLOWS_DIR / "_notice_layout"


def _layout_files() -> tuple[tuple, dict[str, str]]:
    """The shared layout's files (name → text) and a stamp that changes when one does."""
    folder = layout_dir()
    paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    stamp = (str(folder), *((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths))
    with _CATALOG_LOCK:
        if _LAYOUT and _LAYOUT[0] == stamp:
            return _LAYOUT[0], _LAYOUT[1]
    files = {p.name: p.read_text(encoding="utf-8") for p in paths}
    with _CATALOG_LOCK:
        _LAYOUT[:] = [stamp, files]
    return stamp, files


_CATALOGS: dict[str, tuple[tuple, NoticeCatalog | None]] = {}  # version content hash → (layout stamp, catalog)
_LAYOUT: list = []
_CATALOG_LOCK = threading.Lock()


def load_catalog(definitions: DefinitionService, procedure_code: str) -> NoticeCatalog | None:
    """The notice kinds of a procedure as its current version (the one new cases use) holds them, or
    None when there is no such procedure or its version has no ``template/notices.json``.

    :raises ValidationError: the manifest is malformed (each problem named).
    """
    try:
        version = definitions.latest(procedure_code)
    except NotFoundError:
        return None
    return version_catalog(version)


def version_catalog(version: ProcedureVersion) -> NoticeCatalog | None:
    """The notice kinds of a procedure version, or None when it has no ``template/notices.json``.

    Parsed once per version content and shared layout.

    :raises ValidationError: the manifest is malformed (each problem named).
    """
    stamp, layout = _layout_files()
    with _CATALOG_LOCK:
        cached = _CATALOGS.get(version.content_hash)
        if cached and cached[0] == stamp:
            return cached[1]
    version_files = DefinitionService.files(version)
    catalog = (_parse_catalog(version.procedure.code, _template_files(version_files), layout)
               if NOTICES_FILE in version_files else None)
    with _CATALOG_LOCK:
        _CATALOGS[version.content_hash] = (stamp, catalog)
    return catalog


def _template_files(files: dict[str, str]) -> dict[str, str]:
    """A version's or bundle's notice files by name (its ``template/<name>`` keys without the prefix)."""
    return {key[len(TEMPLATE_PREFIX):]: text for key, text in files.items() if key.startswith(TEMPLATE_PREFIX)}


def catalog_problems(procedure_code: str, files: dict[str, str]) -> list[tuple[str, str]]:
    """Why a bundle's notice catalog (``template/notices.json``) could not issue its notices: a kind
    incomplete, a template or stylesheet neither the bundle nor the shared layout holds; [] when fine
    or when the bundle has no catalog."""
    if NOTICES_FILE not in files:
        return []
    try:
        _parse_catalog(procedure_code, _template_files(files), _layout_files()[1])
    except ValidationError as exc:
        return [(NOTICES_FILE, f"{name}: {why}") for name, why in exc.errors.items()] or [(NOTICES_FILE, str(exc))]
    return []


def _parse_catalog(procedure_code: str, files: dict[str, str], layout: dict[str, str]) -> NoticeCatalog:
    used = {**layout, **files}  # a procedure's own file wins over the layout's of the same name
    digest = hashlib.sha256()
    for name in sorted(used):
        digest.update(name.encode("utf-8") + b"\0" + used[name].encode("utf-8") + b"\0")
    try:
        manifest = json.loads(files["notices.json"])
        if not isinstance(manifest, dict):
            raise ValueError("顶层必须是对象")
    except ValueError as exc:
        raise ValidationError(f"notices.json 不是有效的 JSON: {exc}") from exc
    problems: dict[str, str] = {}
    kinds: dict[str, NoticeKind] = {}
    for raw in manifest.get("kinds", []):
        code = str(raw.get("code", ""))
        try:
            kind = NoticeKind(
                procedure_code=procedure_code, code=code, name=str(raw["name"]), template=str(raw["template"]),
                title=str(raw["title"]), group_by=str(raw["group_by"]), public=bool(raw["public"]),
                office_level=RegionLevel(raw["office_level"]), issuer_roles=tuple(raw["issuer_roles"]),
                due_open_steps=tuple(raw.get("due", {}).get("open_steps", [])),
                due_statuses=tuple(raw.get("due", {}).get("statuses", [])),
                fields=tuple(NoticeField(**f) for f in raw.get("fields", [])),
                description=str(raw.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            problems[code or "?"] = f"定义不完整: {exc}"
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", code):
            problems[code] = "code 只能是小写字母、数字和下划线"
        elif kind.group_by not in ("case", *GROUP_LEVELS):
            problems[code] = "group_by 只能是 case、village、township 或 county"
        elif kind.template not in used:
            problems[code] = f"模板 {kind.template} 不存在"
        elif any(f.type not in FIELD_TYPES for f in kind.fields):
            problems[code] = f"字段类型只能是 {'、'.join(FIELD_TYPES)}"
        else:
            kinds[code] = kind
    stylesheets = tuple(manifest.get("stylesheets", []))
    for name in stylesheets:
        if name not in used:
            problems[name] = "样式表不存在"
    if problems:
        raise ValidationError(f"流程 {procedure_code} 的公文模板定义有误", problems)
    return NoticeCatalog(procedure_code, files, stylesheets, kinds, digest.hexdigest(), layout)


# ---------------------------------------------------------------------------- images


@lru_cache(maxsize=4)
def _font_file(pattern: str) -> tuple[str, int] | None:
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}:%{index}", pattern], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path, _, index = out.rpartition(":")
    return (path, int(index or 0)) if path and Path(path).is_file() else None


@lru_cache(maxsize=256)
def seal_png(office_name: str, demo: bool) -> bytes:
    """A round red seal with the office's name around a star (演示 on demo certificates), as PNG."""
    import math

    from PIL import Image, ImageDraw, ImageFont

    size, red = 600, (212, 0, 0, 215)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    centre = size / 2
    draw.ellipse((14, 14, size - 14, size - 14), outline=red, width=16)
    star = []
    for i in range(10):
        radius = 96 if i % 2 == 0 else 38
        angle = math.radians(-90 + 36 * i)
        star.append((centre + radius * math.cos(angle), centre + radius * math.sin(angle)))
    draw.polygon(star, fill=red)

    located = _font_file("Noto Serif CJK SC:style=Bold") or _font_file("Noto Sans CJK SC:style=Bold")

    def font(px: int):
        if located is None:
            return ImageFont.load_default(px)
        return ImageFont.truetype(located[0], px, index=located[1])

    chars = list(office_name)
    n = len(chars)
    span = min(250.0, 30.0 * n)
    glyph_px = int(max(40, min(74, 2 * math.pi * 205 * (span / 360) / max(n, 1) * 0.92)))
    glyph_font = font(glyph_px)
    for i, char in enumerate(chars):
        theta = -90 - span / 2 + span * (i + 0.5) / n
        tile = Image.new("RGBA", (glyph_px * 2, glyph_px * 2), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((glyph_px, glyph_px), char, font=glyph_font, fill=red, anchor="mm")
        tile = tile.rotate(-(theta + 90), resample=Image.Resampling.BICUBIC)
        x = centre + 205 * math.cos(math.radians(theta)) - glyph_px
        y = centre + 205 * math.sin(math.radians(theta)) - glyph_px
        image.alpha_composite(tile, (int(round(x)), int(round(y))))
    if demo:
        draw.text((centre, centre + 150), "演示专用", font=font(52), fill=red, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def qr_svg(text: str) -> str:
    """A QR code as compact SVG (one path, horizontal runs)."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=1)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    parts = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                parts.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    n = len(matrix)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" width="{n}mm" height="{n}mm" '
            f'shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>'
            f'<path d="{"".join(parts)}" fill="#000"/></svg>')


def _data_uri(mime: str, data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


# ---------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderedPdf:
    pdf: bytes
    page_count: int
    seal_page: int | None
    seal_box: tuple[float, float, float, float] | None  # PDF points, origin bottom-left


class NoticeRenderer:
    """WeasyPrint with one FontConfiguration, CSS parsed once per file content, sandboxed Jinja."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._font_config = None
        self._css: dict[str, Any] = {}  # stylesheet text's SHA-256 → parsed
        self._jinja: dict[str, Any] = {}  # catalog content hash → environment

    def _weasyprint(self):
        import weasyprint
        from weasyprint.text.fonts import FontConfiguration

        if self._font_config is None:
            self._font_config = FontConfiguration()
        return weasyprint

    def jinja(self, catalog: NoticeCatalog):
        """The sandboxed Jinja environment of a catalog's templates (admin-supplied data): the version's own
        files first, then the shared layout's."""
        env = self._jinja.get(catalog.content_sha256)
        if env is None:
            from jinja2 import DictLoader, StrictUndefined
            from jinja2.sandbox import SandboxedEnvironment

            loader = DictLoader({**catalog.layout, **catalog.files})
            env = SandboxedEnvironment(loader=loader, autoescape=True, undefined=StrictUndefined)
            env.filters.update(cn_date=cn_date, mask_id=mask_id, mask_name=mask_name)
            with self._lock:
                if len(self._jinja) >= MAX_CACHED_CATALOGS:
                    self._jinja.clear()
                env = self._jinja.setdefault(catalog.content_sha256, env)
        return env

    def stylesheets(self, catalog: NoticeCatalog, names: Iterable[str]) -> list:
        weasyprint = self._weasyprint()
        sheets = []
        for name in names:
            text = catalog.file(name)
            if text is None:
                raise ValidationError(f"样式表 {name} 不存在")
            key = hashlib.sha256(text.encode("utf-8")).hexdigest()
            sheet = self._css.get(key)
            if sheet is None:
                sheet = weasyprint.CSS(string=text, font_config=self._font_config)
                if len(self._css) >= MAX_CACHED_CATALOGS:
                    self._css.clear()
                self._css[key] = sheet
            sheets.append(sheet)
        return sheets

    def render(self, html: str, catalog: NoticeCatalog, stylesheet_names: Iterable[str] | None = None) -> RenderedPdf:
        """Lay out html with the catalog's stylesheets; find the seal (``id="seal"``) for the signature box."""
        with self._lock:
            weasyprint = self._weasyprint()
            from weasyprint.urls import URLFetcher

            sheets = self.stylesheets(catalog, catalog.stylesheets if stylesheet_names is None else stylesheet_names)
            # Templates may only embed data: URIs (seal, QR code): no files, no network.
            fetcher = URLFetcher(allowed_protocols={"data"})
            document = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher).render(
                stylesheets=sheets, font_config=self._font_config)
            seal_page = seal_box = None
            for index, page in enumerate(document.pages):
                if "seal" in page.anchors:
                    x1, y1, x2, y2 = page.anchors["seal"]
                    height_pt = page.height * CSS_PX_TO_PT
                    seal_page = index
                    seal_box = (x1 * CSS_PX_TO_PT, height_pt - y2 * CSS_PX_TO_PT,
                                x2 * CSS_PX_TO_PT, height_pt - y1 * CSS_PX_TO_PT)
            pdf = document.write_pdf()
        return RenderedPdf(pdf, len(document.pages), seal_page, seal_box)


RENDERER = NoticeRenderer()


def _outside_event_loop(fn, *args, **kwargs):
    """Call fn, from a helper thread if this thread already runs an asyncio loop: pyHanko's sync API
    calls asyncio.run(), which refuses to nest (e.g. inside an async server or a Playwright test)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def sign_pdf(pdf: bytes, office, *, page: int | None, box: tuple[float, float, float, float] | None,
             reason: str, location: str) -> bytes:
    """Sign pdf with the office's key: PAdES B-B, the signature widget over the seal (if any)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields
    from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
    from pyhanko.stamp import StaticStampStyle

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    meta = PdfSignatureMetadata(field_name=SIGNATURE_FIELD, md_algorithm="sha256",
                                subfilter=fields.SigSeedSubFilter.PADES, reason=reason, location=location,
                                name=office.office_name)
    spec = fields.SigFieldSpec(SIGNATURE_FIELD, on_page=page or 0,
                               box=tuple(round(v, 2) for v in box) if box else None)
    # The seal is drawn by the page itself (so it also prints from merged files); the widget over it has
    # an empty appearance (pyHanko's text stamp would add an unembedded Courier) and shows the signature.
    signer = PdfSigner(meta, office.signer, stamp_style=StaticStampStyle(border_width=0),
                       new_field_spec=spec)
    reserve = 4096 + 2 * office.chain_der_bytes
    return _outside_event_loop(signer.sign_pdf, writer, bytes_reserved=reserve).getvalue()


# ---------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class SignatureReport:
    """What pyHanko's validator says about a PDF's signature."""

    present: bool
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    entire_file: bool = False
    signer: str = ""
    signing_time: datetime | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.present and self.intact and self.valid and self.trusted and self.entire_file

    @property
    def summary(self) -> str:
        if not self.present:
            return self.problem or "文件中没有数字签名"
        if not (self.intact and self.valid):
            return "签名无效:文件在签名后被改动,或签名已损坏"
        if not self.entire_file:
            return "签名有效,但签名之后文件又被追加了内容"
        if not self.trusted:
            return "签名完整,但签名证书不是受信任的机构签发"
        return "签名有效,文件自签名后未被改动,签名证书可信"


def validate_signature(pdf: bytes, trust_roots: list) -> SignatureReport:
    """Validate the first signature of pdf with pyHanko against trust_roots (no network fetching)."""
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_signatures
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        return SignatureReport(False, problem=f"无法读取 PDF: {exc}")
    if not signatures:
        return SignatureReport(False)
    signature = signatures[0]
    context = ValidationContext(trust_roots=trust_roots, allow_fetching=False, revocation_mode="soft-fail")
    try:
        status = _outside_event_loop(validate_pdf_signature, signature, context)
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return SignatureReport(True, problem=f"签名无法验证: {exc}")
    subject = status.signing_cert.subject.human_friendly if status.signing_cert else ""
    return SignatureReport(
        True, intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        entire_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        signer=subject, signing_time=status.signer_reported_dt,
    )


@dataclass(frozen=True)
class UploadCheck:
    """The result of checking an uploaded PDF against an issued notice."""

    notice: IssuedNotice
    sha256: str
    matches: bool
    other_serial: str | None
    signature: SignatureReport | None

    @property
    def message(self) -> str:
        if self.matches:
            return "核验通过:上传的文件与签发的文件完全一致,未被改动。"
        if self.other_serial:
            return f"不一致:上传的文件是另一份签发文件(编号 {self.other_serial}),不是本编号的文件。"
        return "不一致:上传的文件不是本编号签发的文件,或已被改动。"


# ---------------------------------------------------------------------------- the service


@dataclass
class Group:
    key: str
    region_code: str
    cases: list[Case] = field(default_factory=list)


class NoticeService:
    """Issues, stores and verifies notices. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, keys: KeyStore | None = None, base_url: str | None = None,
                 renderer: NoticeRenderer | None = None, cases: CaseService | None = None):
        self.session = session
        self.clock = clock
        self.cases = cases or CaseService(session, clock)
        self.keys = keys or KeyStore(session, clock)
        self.base_url = (base_url or public_url()).rstrip("/")
        self.renderer = renderer or RENDERER
        self._issuance_steps: dict[tuple[str, str], frozenset[str]] = {}  # per kind, for this unit of work

    # ------------------------------------------------------------------ catalog
    def catalogs(self) -> list[tuple[Procedure, NoticeCatalog]]:
        """Procedures that have notice templates, with their kinds."""
        out = []
        for procedure in self.session.scalars(select(Procedure).order_by(Procedure.code)):
            catalog = self.catalog(procedure.code)
            if catalog and catalog.kinds:
                out.append((procedure, catalog))
        return out

    def catalog(self, procedure_code: str) -> NoticeCatalog | None:
        """The notice kinds and templates of the procedure's current version (None: it issues none).

        :raises ValidationError: its notices.json is malformed.
        """
        return load_catalog(self.cases.definitions, procedure_code)

    def kind(self, procedure_code: str, kind_code: str) -> NoticeKind:
        """A notice kind of a procedure.

        :raises NotFoundError: no such procedure or kind.
        """
        catalog = self.catalog(procedure_code)
        if catalog is None or kind_code not in catalog.kinds:
            raise NotFoundError("没有这种公文")
        return catalog.kinds[kind_code]

    def may_issue(self, actor: Actor, kind: NoticeKind) -> bool:
        return any(g.role_code in kind.issuer_roles for g in actor.grants)

    def issuance_steps(self, kind: NoticeKind) -> frozenset[str]:
        """BPMN ids of the user steps, in any version of the kind's procedure, that issue this kind (``noticeKind``).

        Asked several times per issue and per due-case query; the versions' specs are walked once."""
        key = (kind.procedure_code, kind.code)
        if key not in self._issuance_steps:
            self._issuance_steps[key] = frozenset(self._find_issuance_steps(kind))
        return self._issuance_steps[key]

    def _find_issuance_steps(self, kind: NoticeKind) -> set[str]:
        steps: set[str] = set()
        versions = self.session.scalars(select(ProcedureVersion).join(Procedure)
                                        .where(Procedure.code == kind.procedure_code))
        for version in versions:
            spec, subprocess_specs = self.cases.definitions.specs(version)
            for process in (spec, *subprocess_specs.values()):
                for task_spec in process.task_specs.values():
                    if spec_properties(task_spec).get("noticeKind") == kind.code:
                        steps.add(task_spec.bpmn_id)
        return steps

    # ------------------------------------------------------------------ which cases
    def due_cases(self, actor: Actor, kind: NoticeKind, region_code: str | None = None,
                  include_covered: bool = False) -> list[Case]:
        """Cases in the actor's jurisdiction whose notice of this kind is due and not yet issued."""
        prefixes = [g.prefix for g in actor.grants if g.role_code in kind.issuer_roles]
        if not prefixes:
            return []
        stmt = (select(Case).join(Case.version).join(Procedure)
                .where(Procedure.code == kind.procedure_code)
                .where(or_(*[Case.region_code.startswith(p) for p in prefixes])))
        if region_code:
            stmt = stmt.where(Case.region_code.startswith(_prefix_of(region_code)))
        conditions = self._due_conditions(kind)
        if conditions:
            stmt = stmt.where(or_(*conditions))
        if not include_covered and not self.issuance_steps(kind):  # an open issuance step is due even after
            # an earlier notice (an objection sent the case back, and a new period needs a new notice)
            superseding = aliased(IssuedNotice)
            current = (select(IssuedNoticeCase.case_id).join(IssuedNotice)
                       .where(IssuedNotice.procedure_code == kind.procedure_code, IssuedNotice.kind == kind.code)
                       .where(~exists().where(superseding.supersedes_id == IssuedNotice.id)))
            stmt = stmt.where(Case.id.not_in(current))
        return list(self.session.scalars(stmt.order_by(Case.region_code, Case.id)))

    def _due_conditions(self, kind: NoticeKind) -> list:
        """When a case needs this notice: at its open issuance step (or another open step), or in a status."""
        conditions = []
        steps = self.issuance_steps(kind) | set(kind.due_open_steps)
        if steps:
            conditions.append(exists().where(TaskRow.case_id == Case.id, TaskRow.status == TaskStatus.open,
                                             TaskRow.spec_name.in_(steps)))
        if kind.due_statuses:
            conditions.append(Case.status.in_(kind.due_statuses))
        return conditions

    def groups(self, kind: NoticeKind, cases: list[Case]) -> list[Group]:
        """Split cases into one group per notice (per case, or per village/township/county)."""
        groups: dict[str, Group] = {}
        for case in cases:
            if kind.group_by == "case":
                key, region = f"case:{case.id}", case.region_code
            else:
                region = ancestor_at(case.region_code, GROUP_LEVELS[kind.group_by])
                key = f"{kind.group_by}:{region}"
            groups.setdefault(key, Group(key, region)).cases.append(case)
        return list(groups.values())

    def offices_for(self, kind: NoticeKind, region_code: str) -> list[OfficeKey]:
        """Active office keys at the kind's office level whose region contains region_code."""
        office_region = ancestor_at(region_code, kind.office_level)
        return list(self.session.scalars(
            select(OfficeKey).where(OfficeKey.region_code == office_region, OfficeKey.retired_at.is_(None))
            .order_by(OfficeKey.office_name)))

    def _cases(self, actor: Actor, case_ids: Iterable[int]) -> list[Case]:
        ids = sorted({int(i) for i in case_ids})
        if not ids:
            raise ValidationError("请选择案件", {"cases": "至少选择一个案件"})
        cases = list(self.session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.region_code, Case.id)))
        if len(cases) != len(ids) or not all(actor.covers(c.region_code) or c.started_by_id == actor.user_id
                                             for c in cases):
            raise NotFoundError("案件不存在")
        return cases

    def _check_issuer(self, actor: Actor, kind: NoticeKind, cases: list[Case], office: OfficeKey) -> None:
        for case in cases:
            if case.version.procedure.code != kind.procedure_code:
                raise ValidationError("案件不属于该流程", {"cases": f"{case.title} 不是{kind.name}所属流程的案件"})
            if not case.region_code.startswith(_prefix_of(office.region_code)):
                raise ValidationError("签章单位不管辖该案件", {"office": f"{office.office_name} 不管辖 {case.title}"})
        allowed = [g for g in actor.grants if g.role_code in kind.issuer_roles
                   and office.region_code.startswith(g.prefix)
                   and all(c.region_code.startswith(g.prefix) for c in cases)]
        if not allowed:
            raise ForbiddenError(f"您无权以 {office.office_name} 的名义签发{kind.name}")

    def _check_due(self, kind: NoticeKind, cases: list[Case]) -> None:
        """A new notice only for cases at the right point, and not for one already covered (reissue instead).

        For a kind issued at a BPMN step, the open step is the rule (a case sent back by an objection
        needs a new notice although an earlier one covers it); completing that step under the case
        lock refuses a second issue.
        """
        ids = [c.id for c in cases]
        at_step = bool(self.issuance_steps(kind))
        superseding = aliased(IssuedNotice)
        covered = self.session.execute(
            select(IssuedNoticeCase.case_id, IssuedNotice.serial).join(IssuedNotice)
            .where(IssuedNoticeCase.case_id.in_(ids), IssuedNotice.procedure_code == kind.procedure_code,
                   IssuedNotice.kind == kind.code)
            .where(~exists().where(superseding.supersedes_id == IssuedNotice.id))).all()
        conditions = self._due_conditions(kind)
        if conditions:
            due = set(self.session.scalars(select(Case.id).where(Case.id.in_(ids), or_(*conditions))))
            not_due = [c for c in cases if c.id not in due]
            if at_step:  # at its open step a case is due even if covered; past it, a covered case needs a reissue
                covered = [(case_id, serial) for case_id, serial in covered if case_id not in due]
                not_due = [c for c in not_due if c.id not in {case_id for case_id, _serial in covered}]
            if not_due:
                raise ValidationError("案件尚未到出具该公文的环节", {
                    "cases": f"{'、'.join(c.subject.name for c in not_due)} 当前不需要{kind.name}"})
        if covered:
            serials = "、".join(sorted({serial for _case, serial in covered}))
            raise ConflictError(f"所选案件已有{kind.name}(编号 {serials});如需更正请重新签发该份")

    def _validated_fields(self, kind: NoticeKind, values: dict[str, Any], settings_: dict[str, Any]) -> dict[str, Any]:
        today = self.clock.now().astimezone(CHINA_TZ).date()
        errors: dict[str, str] = {}
        cleaned: dict[str, Any] = {}
        for f in kind.fields:
            raw = values.get(f.key)
            raw = raw.strip() if isinstance(raw, str) else raw
            if raw in (None, ""):
                if f.default_setting and f.default_setting in settings_:
                    raw = settings_[f.default_setting]
                elif f.default == "today":
                    raw = today.isoformat()
                else:
                    raw = f.default
            if raw in (None, ""):
                if f.required:
                    errors[f.key] = f"请填写{f.label}"
                continue
            try:
                if f.type == "integer":
                    value: Any = int(raw)
                    if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
                        errors[f.key] = f"{f.label}应在 {f.min}–{f.max} 之间"
                        continue
                elif f.type == "date":
                    value = date.fromisoformat(str(raw)).isoformat()
                    if f.default == "today" and value < today.isoformat():
                        errors[f.key] = f"{f.label}不能早于签发日"
                        continue
                elif f.type == "phone":
                    value = str(raw)
                    # five digits at least: the service hotlines 12317 (乡村振兴) and 12345 are numbers too
                    if not re.fullmatch(r"[0-9][0-9\- ]{4,19}", value):
                        errors[f.key] = f"{f.label}格式不正确"
                        continue
                else:
                    value = str(raw)
                    if len(value) > 200:
                        errors[f.key] = f"{f.label}不能超过 200 字"
                        continue
            except ValueError:
                errors[f.key] = f"{f.label}格式不正确"
                continue
            cleaned[f.key] = value
        if errors:
            raise ValidationError("公文信息不完整", errors)
        return cleaned

    # ------------------------------------------------------------------ issue
    def issue(self, actor: Actor, procedure_code: str, kind_code: str, case_ids: Iterable[int],
              values: dict[str, Any] | None = None, office_key_id: int | None = None,
              client_addr: str | None = None, *, supersedes: IssuedNotice | None = None,
              reason: str | None = None, batch_id: int | None = None, group_key: str | None = None) -> IssuedNotice:
        """Render, sign and store one notice covering case_ids; record it in each case's history.

        :raises NotFoundError: unknown kind, or a case outside the actor's jurisdiction.
        :raises ForbiddenError: the actor may not issue this kind with that office.
        :raises ValidationError: cases of several groups, no office key, or bad field values.
        """
        catalog = self.catalog(procedure_code)
        if catalog is None or kind_code not in catalog.kinds:
            raise NotFoundError("没有这种公文")
        kind = catalog.kinds[kind_code]
        cases = self._cases(actor, case_ids)
        groups = self.groups(kind, cases)
        if len(groups) != 1:
            raise ValidationError("所选案件须属于同一份公文", {"cases": f"{kind.name}按{_GROUP_LABEL[kind.group_by]}"
                                                                  f"出具,所选案件分属 {len(groups)} 份;请用批量打印"})
        group = groups[0]
        office = self._office(kind, group.region_code, office_key_id)
        self._check_issuer(actor, kind, cases, office)
        if supersedes is None:
            self._check_due(kind, cases)
        manifest_settings = _procedure_settings(cases[0])
        params = self._validated_fields(kind, values or {}, manifest_settings)
        if supersedes is not None:  # a correction keeps the period of the notice it replaces
            params.update({k: v for k, v in supersedes.params.items() if k in PERIOD_KEYS})
        with self.session.begin_nested():  # a failure below leaves no step completed and nothing stored
            return self._issue(actor, kind, catalog, cases, group, office, params, manifest_settings,
                               client_addr, supersedes, reason, batch_id, group_key)

    def _issue(self, actor: Actor, kind: NoticeKind, catalog: NoticeCatalog, cases: list[Case], group: Group,
               office: OfficeKey, params: dict[str, Any], manifest_settings: dict[str, Any], client_addr: str | None,
               supersedes: IssuedNotice | None, reason: str | None, batch_id: int | None,
               group_key: str | None) -> IssuedNotice:
        now = self.clock.now()
        serial = self._new_serial(now)
        steps = {} if supersedes is not None else self._complete_steps(actor, kind, cases, serial)
        due = [t.due_at for _row, timers in steps.values() for t in timers]
        if due:  # the 公示 period the step started, as its timers hold it
            start = now.astimezone(CHINA_TZ).date()
            end = max(due).astimezone(CHINA_TZ).date() - timedelta(days=1)
            params.update(period_start=start.isoformat(), period_end=end.isoformat(),
                          period_days=(end - start).days + 1, period_until=max(due).isoformat())
        context = self._context(kind, group, office, params, serial, now, manifest_settings)
        title = self.renderer.jinja(catalog).from_string(kind.title).render(**context).strip()
        context["notice"]["title"] = title
        html = self.renderer.jinja(catalog).get_template(kind.template).render(**context)
        rendered = self.renderer.render(html, catalog)
        region = self.session.get(Region, office.region_code)
        signed = sign_pdf(rendered.pdf, self.keys.signer(office), page=rendered.seal_page, box=rendered.seal_box,
                          reason=f"{kind.name} {serial}", location=region.name if region else office.region_code)

        notice = IssuedNotice(
            serial=serial, procedure_code=kind.procedure_code, kind=kind.code, kind_name=kind.name[:40],
            title=title[:300], public=kind.public, region_code=group.region_code, office_key_id=office.id,
            office_name=office.office_name, issued_by_id=actor.user_id, issued_at=now,
            document_date=context["notice"]["date"].isoformat(), params=params,
            covers=[_cover(c, kind.public) for c in cases], template_sha256=catalog.content_sha256,
            sha256=hashlib.sha256(signed).hexdigest(), size_bytes=len(signed), page_count=rendered.page_count,
            supersedes_id=supersedes.id if supersedes else None, reissue_reason=reason,
            batch_id=batch_id, group_key=group_key or group.key, pdf=signed,
        )
        self.session.add(notice)
        self.session.flush()
        for case in cases:
            row = steps[case.id][0] if case.id in steps else None
            self.session.add(IssuedNoticeCase(notice_id=notice.id, case_id=case.id))
            self.session.add(AuditEvent(
                case_id=case.id, task_id=row.id if row else None, user_id=actor.user_id, action=NOTICE_ACTION,
                step=row.title if row else kind.name, opinion=reason, created_at=now, client_addr=client_addr,
                data_diff={"serial": serial, "kind": kind.code, "title": title, "sha256": notice.sha256,
                           "office": office.office_name,
                           **({"period": [params["period_start"], params["period_end"]]} if due else {}),
                           **({"supersedes": supersedes.serial} if supersedes else {})},
            ))
        self.session.flush()
        return notice

    def _complete_steps(self, actor: Actor, kind: NoticeKind, cases: list[Case],
                        serial: str) -> dict[int, tuple[TaskRow, list[TimerRow]]]:
        """Complete the open issuance step of each case (none for a kind no step issues).

        :raises ConflictError: a case's step was completed meanwhile (someone else issued it).
        """
        if not self.issuance_steps(kind):
            return {}
        done = {}
        for case in cases:
            completed = self.cases.complete_issuance(case.id, kind.code, actor, serial)
            if completed is None:
                raise ConflictError(f"{case.subject.name} 的{kind.name}已由他人出具,请刷新后重试")
            done[case.id] = completed
        return done

    def reissue(self, actor: Actor, serial: str, reason: str, values: dict[str, Any] | None = None,
                client_addr: str | None = None) -> IssuedNotice:
        """Issue a notice again under a new serial (current data, the office's current key); the old one is superseded.

        :raises NotFoundError: no such notice in the actor's jurisdiction.
        :raises ConflictError: it was already superseded.
        :raises ValidationError: no reason given.
        """
        old = self.get_for(actor, serial)
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError("请填写重新签发的原因", {"reason": "必须填写原因"})
        if len(reason) > MAX_REASON_LENGTH:
            raise ValidationError("原因过长", {"reason": f"不能超过 {MAX_REASON_LENGTH} 字"})
        if self.superseded_by(old) is not None:
            raise ConflictError("该公文已被重新签发,请在最新的一份上操作")
        current = self.keys.active(old.office.office_code)
        if current is None:
            raise ValidationError("原签章单位已没有有效证书", {"office": "请先为该单位生成或导入证书"})
        case_ids = [c["case_id"] for c in old.covers]
        return self.issue(actor, old.procedure_code, old.kind, case_ids, {**old.params, **(values or {})},
                          office_key_id=current.id, client_addr=client_addr, supersedes=old, reason=reason)

    def _office(self, kind: NoticeKind, region_code: str, office_key_id: int | None) -> OfficeKey:
        candidates = self.offices_for(kind, region_code)
        if office_key_id is not None:
            chosen = next((o for o in candidates if o.id == int(office_key_id)), None)
            if chosen is None:
                raise ValidationError("所选签章单位不可用", {"office": "该单位不能签发这份公文,或证书已停用"})
            return chosen
        if not candidates:
            region = self.session.get(Region, ancestor_at(region_code, kind.office_level))
            name = region.name if region else region_code
            raise ValidationError("没有可用的签章证书", {
                "office": f"{name}尚无签章证书:请管理员运行 flask notices keygen --office "
                          f"{ancestor_at(region_code, kind.office_level)}/单位名称"})
        return candidates[0]

    def _new_serial(self, now: datetime) -> str:
        year = now.astimezone(CHINA_TZ).year
        while True:
            token = "".join(secrets.choice(SERIAL_ALPHABET) for _ in range(8))
            serial = f"XF{year}-{token[:4]}-{token[4:]}"
            if not self.session.scalar(select(func.count(IssuedNotice.id)).where(IssuedNotice.serial == serial)):
                return serial

    def _context(self, kind: NoticeKind, group: Group, office: OfficeKey, params: dict[str, Any], serial: str,
                 now: datetime, manifest_settings: dict[str, Any]) -> dict[str, Any]:
        today = now.astimezone(CHINA_TZ).date()
        regions = self._region_names({c.region_code for c in group.cases} | {group.region_code, office.region_code})
        case_rows = [self._case_context(c, kind, regions) for c in group.cases]
        derived = dict(params)
        if "period_start" in params and "period_days" in params and "period_end" not in params:
            start = date.fromisoformat(params["period_start"])
            derived["period_end"] = (start + timedelta(days=int(params["period_days"]) - 1)).isoformat()
        verify_url = f"{self.base_url}/verify/{serial}"
        office_region = regions.get(office.region_code)
        return {
            "notice": {"serial": serial, "kind": kind.code, "kind_name": kind.name, "title": "",
                       "date": today, "date_text": cn_date(today), "public": kind.public,
                       "verify_url": verify_url, "qr_data_uri": _data_uri("image/svg+xml", qr_svg(verify_url))},
            "params": derived,
            "office": {"name": office.office_name, "region": office_region,
                       "demo": office.source == SOURCE_DEMO,
                       "seal_data_uri": _data_uri("image/png", seal_png(office.office_name,
                                                                        office.source == SOURCE_DEMO))},
            "region": regions.get(group.region_code),
            "village": regions.get(ancestor_at(group.region_code, RegionLevel.village))
            if kind.group_by in ("case", "village") else None,
            "township": regions.get(ancestor_at(group.region_code, RegionLevel.township)),
            "county": regions.get(ancestor_at(group.region_code, RegionLevel.county)),
            "cases": case_rows,
            "settings": manifest_settings,
        }

    def _region_names(self, codes: set[str]) -> dict[str, dict[str, str]]:
        wanted = set()
        for code in codes:
            for level in (RegionLevel.county, RegionLevel.township, RegionLevel.village):
                wanted.add(ancestor_at(code, level))
        rows = self.session.scalars(select(Region).where(Region.code.in_(wanted))).all()
        return {r.code: {"code": r.code, "name": r.name, "short_name": short_region_name(r.name),
                         "level": r.level.value} for r in rows}

    def _case_context(self, case: Case, kind: NoticeKind, regions: dict[str, dict[str, str]]) -> dict[str, Any]:
        tasks = list(self.session.scalars(select(TaskRow).where(TaskRow.case_id == case.id).order_by(TaskRow.id)))
        role_names = {r.code: r.name for r in self.session.scalars(select(Role))}
        users = {u.id: u.display_name for u in self.session.scalars(
            select(User).where(User.id.in_({t.completed_by_id for t in tasks if t.completed_by_id})))}
        steps = [{
            "step": t.spec_name, "title": t.title,
            "level": re.sub(r"\s*\([a-z_]+\)\s*$", "", t.lane or "") or role_names.get(t.role_code, t.role_code),
            "role": role_names.get(t.role_code, t.role_code),
            "action": t.action, "action_label": ACTION_LABELS.get(t.action or "", t.action or ""),
            "opinion": t.opinion or "", "by": users.get(t.completed_by_id or 0, ""),
            "date": t.completed_at.astimezone(CHINA_TZ).date() if t.completed_at else None,
            "date_text": cn_date(t.completed_at),
        } for t in tasks if t.status == TaskStatus.completed and t.action != ISSUE_ACTION]  # opinions only
        subject = case.subject
        attrs = subject.attrs or {}
        return {
            "id": case.id, "title": case.title, "status": case.status.value,
            "status_label": CASE_STATUS_LABELS.get(case.status.value, case.status.value),
            "subject_name": subject.name,
            "id_number": mask_id(subject.id_number) if kind.public else (subject.id_number or ""),
            "members": attrs.get("members", ""), "category": attrs.get("category", ""), "attrs": attrs,
            "village": regions.get(ancestor_at(case.region_code, RegionLevel.village)),
            "township": regions.get(ancestor_at(case.region_code, RegionLevel.township)),
            "county": regions.get(ancestor_at(case.region_code, RegionLevel.county)),
            "data": merged_data(tasks), "steps": steps,
            "created_date_text": cn_date(case.created_at), "finished_date_text": cn_date(case.finished_at),
        }

    # ------------------------------------------------------------------ reading
    def get_public(self, serial: str) -> IssuedNotice:
        """A notice by serial, for the public verification page.

        :raises NotFoundError: no such serial.
        """
        notice = self.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == (serial or "").upper().strip()))
        if notice is None:
            raise NotFoundError("没有这个编号的公文")
        return notice

    def get_for(self, actor: Actor, serial: str) -> IssuedNotice:
        """A notice the actor may manage: its region inside the actor's jurisdiction.

        :raises NotFoundError: no such notice, or outside the jurisdiction.
        """
        notice = self.get_public(serial)
        if not self.may_view(actor, notice):
            raise NotFoundError("没有这个编号的公文")
        return notice

    def may_view(self, actor: Actor, notice: IssuedNotice) -> bool:
        return actor.covers(notice.region_code) or notice.issued_by_id == actor.user_id

    def superseded_by(self, notice: IssuedNotice) -> IssuedNotice | None:
        return self.session.scalar(select(IssuedNotice).where(IssuedNotice.supersedes_id == notice.id))

    def supersedes(self, notice: IssuedNotice) -> IssuedNotice | None:
        return self.session.get(IssuedNotice, notice.supersedes_id) if notice.supersedes_id else None

    def pdf(self, notice: IssuedNotice) -> bytes:
        return self.session.scalar(select(IssuedNotice.pdf).where(IssuedNotice.id == notice.id))

    def list_for(self, actor: Actor, limit: int = 200) -> list[IssuedNotice]:
        prefixes = {g.prefix for g in actor.grants}
        if not prefixes:
            return []
        stmt = (select(IssuedNotice).where(or_(*[IssuedNotice.region_code.startswith(p) for p in prefixes]))
                .order_by(IssuedNotice.issued_at.desc(), IssuedNotice.id.desc()).limit(limit))
        return list(self.session.scalars(stmt))

    def case_notices(self, case_id: int) -> list[IssuedNotice]:
        return list(self.session.scalars(
            select(IssuedNotice).join(IssuedNoticeCase).where(IssuedNoticeCase.case_id == case_id)
            .order_by(IssuedNotice.issued_at, IssuedNotice.id)))

    def superseded_ids(self, notices: Iterable[IssuedNotice]) -> set[int]:
        ids = [n.id for n in notices]
        if not ids:
            return set()
        return set(self.session.scalars(select(IssuedNotice.supersedes_id).where(IssuedNotice.supersedes_id.in_(ids))))

    # ------------------------------------------------------------------ verification
    def check_upload(self, serial: str, data: bytes) -> UploadCheck:
        """Compare an uploaded file with the notice issued under serial (SHA-256), and say what it is."""
        notice = self.get_public(serial)
        digest = hashlib.sha256(data).hexdigest()
        if digest == notice.sha256:
            return UploadCheck(notice, digest, True, None, None)
        other = self.session.scalar(select(IssuedNotice.serial).where(IssuedNotice.sha256 == digest).limit(1))
        report = validate_signature(data, self.keys.trust_roots()) if data[:5] == b"%PDF-" else None
        return UploadCheck(notice, digest, False, other, report)

    def validate(self, notice: IssuedNotice) -> SignatureReport:
        """pyHanko's verdict on a stored notice (trusting the demo CA and the roots admins trust)."""
        return validate_signature(self.pdf(notice), self.keys.trust_roots())

    # ------------------------------------------------------------------ batches
    def create_batch(self, actor: Actor, procedure_code: str, kind_code: str, case_ids: Iterable[int],
                     values: dict[str, Any] | None = None) -> NoticeBatch:
        """Queue a batch issuing one notice per group of the selected cases; nothing is rendered yet.

        Every group is checked first (jurisdiction, office key, fields), so a batch does not fail
        half-way for a reason known up front.

        :raises NotFoundError: unknown kind or a case outside the jurisdiction.
        :raises ForbiddenError: the actor may not issue this kind for some group.
        :raises ValidationError: no cases, a group without an office key, or bad field values.
        """
        kind = self.kind(procedure_code, kind_code)
        cases = self._cases(actor, case_ids)
        groups = self.groups(kind, cases)
        missing, not_due = {}, []
        for group in groups:
            try:
                office = self._office(kind, group.region_code, None)
            except ValidationError as exc:
                missing[group.key] = exc.errors.get("office", str(exc))
                continue
            self._check_issuer(actor, kind, group.cases, office)
            try:
                self._check_due(kind, group.cases)
            except ValidationError as exc:
                not_due.append(exc.errors.get("cases", str(exc)))
            except ConflictError as exc:
                not_due.append(str(exc))
        if missing:
            raise ValidationError("部分公文没有可用的签章证书", {"office": "；".join(sorted(set(missing.values())))})
        if not_due:
            raise ValidationError("部分案件不能出具该公文", {"cases": "；".join(not_due)})
        params = self._validated_fields(kind, values or {}, _procedure_settings(cases[0]))
        batch = NoticeBatch(
            procedure_code=procedure_code, kind=kind.code, created_by_id=actor.user_id, created_at=self.clock.now(),
            status=NoticeBatchStatus.queued, total=len(groups), done_count=0, failed_count=0,
            params={"case_ids": [c.id for c in cases], "values": params, "base_url": self.base_url}, errors=[],
        )
        self.session.add(batch)
        self.session.flush()
        return batch

    def get_batch(self, actor: Actor, batch_id: int) -> NoticeBatch:
        """A batch the actor created.

        :raises NotFoundError: no such batch, or someone else's.
        """
        batch = self.session.get(NoticeBatch, batch_id)
        if batch is None or batch.created_by_id != actor.user_id:
            raise NotFoundError("批量任务不存在")
        return batch

    def batch_notices(self, batch: NoticeBatch, with_pdf: bool = False) -> list[IssuedNotice]:
        stmt = select(IssuedNotice).where(IssuedNotice.batch_id == batch.id).order_by(IssuedNotice.id)
        if with_pdf:
            stmt = stmt.options(undefer(IssuedNotice.pdf))
        return list(self.session.scalars(stmt))


_GROUP_LABEL = {"case": "案件", "village": "村", "township": "乡镇", "county": "县"}


def _prefix_of(region_code: str) -> str:
    from engine.access.regions import level_of

    return region_code[: PREFIX_LENGTH[level_of(region_code)]]


def _procedure_settings(case: Case) -> dict[str, Any]:
    try:
        return dict(json.loads(case.version.files["procedure.json"]).get("settings", {}))
    except (KeyError, ValueError):
        return {}


def _cover(case: Case, public: bool) -> dict[str, Any]:
    name = case.subject.name
    return {"case_id": case.id, "name": name if public else mask_name(name), "region_code": case.region_code}


# ---------------------------------------------------------------------------- running batches


def run_batch(factory: sessionmaker, clock, batch_id: int, progress: Callable[[int, int], None] | None = None,
              keys_passphrase: bytes | None = None) -> NoticeBatchStatus | None:
    """Claim a queued batch and issue its notices, one transaction each; return its final status.

    Returns None when another worker holds the batch. A batch interrupted half-way is resumed by
    the next claim once its lease ran out: groups already issued are skipped.
    """
    now = clock.now()
    with factory() as session, session.begin():
        claimed = session.execute(
            update(NoticeBatch).where(NoticeBatch.id == batch_id)
            .where(or_(NoticeBatch.status == NoticeBatchStatus.queued,
                       (NoticeBatch.status == NoticeBatchStatus.running) & (NoticeBatch.claimed_until < now)))
            .values(status=NoticeBatchStatus.running, started_at=now, claimed_until=now + BATCH_LEASE)
        ).rowcount
    if claimed != 1:
        return None
    from engine.access.directory import DirectoryService

    with factory() as session:
        batch = session.get(NoticeBatch, batch_id)
        params = dict(batch.params)
        procedure_code, kind_code = batch.procedure_code, batch.kind
        errors = list(batch.errors or [])
        try:
            actor = DirectoryService(session).actor(session.get(User, batch.created_by_id))
            service = NoticeService(session, clock, KeyStore(session, clock, keys_passphrase), params.get("base_url"))
            kind = service.kind(procedure_code, kind_code)
        except XiangFlowError as exc:
            session.rollback()
            _finish_batch(factory, clock, batch_id, NoticeBatchStatus.failed, 0, 0,
                          [*errors, {"group": "", "message": str(exc)[:500]}])
            return NoticeBatchStatus.failed
        cases = list(session.scalars(select(Case).where(Case.id.in_(params["case_ids"]))
                                     .order_by(Case.region_code, Case.id)))
        groups = [(g.key, [c.id for c in g.cases]) for g in service.groups(kind, cases)]
        done_keys = set(session.scalars(select(IssuedNotice.group_key).where(IssuedNotice.batch_id == batch_id)))
        session.rollback()
    done = len(done_keys)
    failed = 0
    total = len(groups)
    if progress:
        progress(done, total)
    for key, case_ids in groups:
        if key in done_keys:
            continue
        try:
            with factory() as session, session.begin():
                service = NoticeService(session, clock, KeyStore(session, clock, keys_passphrase),
                                        params.get("base_url"))
                service.issue(actor, procedure_code, kind_code, case_ids, params.get("values"),
                              batch_id=batch_id, group_key=key)
                done += 1
                session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(
                    done_count=done, claimed_until=clock.now() + BATCH_LEASE))
        except Exception as exc:  # one notice failing (bad data, a template error) must not stop the others
            if not isinstance(exc, XiangFlowError):
                log.exception("notice batch %s: group %s failed", batch_id, key)
            failed += 1
            errors.append({"group": key, "message": _message(exc)[:500]})
            with factory() as session, session.begin():
                session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(
                    failed_count=failed, errors=errors, claimed_until=clock.now() + BATCH_LEASE))
        if progress:
            progress(done + failed, total)
    status = NoticeBatchStatus.failed if total and failed == total else NoticeBatchStatus.done
    _finish_batch(factory, clock, batch_id, status, done, failed, errors)
    return status


def _message(exc: Exception) -> str:
    detail = "；".join(getattr(exc, "errors", {}).values())
    return f"{exc}：{detail}" if detail else str(exc)


def _finish_batch(factory, clock, batch_id: int, status: NoticeBatchStatus, done: int, failed: int,
                  errors: list) -> None:
    with factory() as session, session.begin():
        session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(
            status=status, finished_at=clock.now(), claimed_until=None, done_count=done, failed_count=failed,
            errors=errors))


def run_queued_batches(factory: sessionmaker, clock, limit: int = 10) -> int:
    """Run queued (or abandoned) batches; return how many ran."""
    now = clock.now()
    with factory() as session:
        ids = list(session.scalars(
            select(NoticeBatch.id).where(or_(NoticeBatch.status == NoticeBatchStatus.queued,
                                             (NoticeBatch.status == NoticeBatchStatus.running)
                                             & (NoticeBatch.claimed_until < now)))
            .order_by(NoticeBatch.id).limit(limit)))
    return sum(1 for batch_id in ids if run_batch(factory, clock, batch_id) is not None)


# ---------------------------------------------------------------------------- batch output


def _safe_filename(text: str) -> str:
    return re.sub(r'[\\/:*?"<>|\s]+', "_", text)[:80]


def write_zip(notices: list[IssuedNotice], out) -> None:
    """Write the signed PDFs (each verifiable on its own) and a list with their SHA-256 to a zip."""
    listing = io.StringIO()
    writer = csv.writer(listing)
    writer.writerow(["编号", "公文", "标题", "签发单位", "成文日期", "SHA-256", "文件"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, notice in enumerate(notices, 1):
            name = f"{index:04d}_{notice.serial}_{_safe_filename(notice.title)}.pdf"
            archive.writestr(name, notice.pdf)
            writer.writerow([notice.serial, notice.kind_name, notice.title, notice.office_name,
                             notice.document_date, notice.sha256, name])
        archive.writestr("清单.csv", "\ufeff" + listing.getvalue())


def merge_pdfs(notices: list[IssuedNotice]) -> bytes:
    """One PDF for printing, the notices one after another.

    Merging drops the individual signatures (a signature covers exactly one file); each printed
    page still carries its serial number and QR code, and the signed originals are in the zip.
    """
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for notice in notices:
        writer.append(PdfReader(io.BytesIO(notice.pdf)), import_outline=False)
    writer.add_metadata({"/Title": f"公文合并打印({len(notices)} 份)", "/Producer": "XiangFlow"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
