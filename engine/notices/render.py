"""HTML → PDF for notices: WeasyPrint with one warm font configuration per process.

``RENDERER`` (one per process) holds a single WeasyPrint ``FontConfiguration`` with the notice fonts
(engine/notices/fonts.py) registered once, every stylesheet parsed once per content, and one sandboxed
Jinja environment per catalog. Rendering runs under a lock: WeasyPrint makes no thread-safety promise
(processes, not threads, are how batches use several cores — engine/notices/batches.py).

Templates and stylesheets are admin-supplied data: Jinja is sandboxed, and the only URLs a notice may
load are ``data:`` URIs (the seal and the QR code): no files, no network.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.core.errors import ValidationError
from engine.notices import fonts
from engine.notices.formatting import cn_date, mask_name
from engine.procedures.forms import mask_id
from engine.procedures.notice_catalog import NoticeCatalog

log = logging.getLogger(__name__)

CSS_PX_TO_PT = 0.75
MAX_CACHED = 64  # parsed stylesheets and Jinja environments kept per process
SEAL_ANCHOR = "seal"


@dataclass(frozen=True)
class RenderedPdf:
    pdf: bytes
    page_count: int
    seal_page: int | None
    seal_box: tuple[float, float, float, float] | None  # PDF points, origin bottom-left


def _alias_pattern(family: str) -> re.Pattern[str]:
    return re.compile(r"""(["']?)\b""" + re.escape(family) + r"""\b\1(?!\s*Notice)""")


class NoticeRenderer:
    """WeasyPrint with one FontConfiguration and the notice fonts, CSS parsed once per content, sandboxed Jinja."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._font_config: Any = None
        self._font_faces: list = []  # the @font-face sheet of the built notice fonts (parsed once)
        self._aliases: list[tuple[re.Pattern[str], str]] = []
        self._css: dict[str, Any] = {}  # stylesheet text's SHA-256 → parsed
        self._jinja: dict[str, Any] = {}  # catalog content hash → environment

    @property
    def notice_fonts(self) -> list[str]:
        """The families of the built notice fonts this renderer uses (empty: the installed fonts only)."""
        return [alias for _pattern, alias in self._aliases]

    def _weasyprint(self):
        import weasyprint

        if self._font_config is None:
            from weasyprint.text.fonts import FontConfiguration
            from weasyprint.urls import URLFetcher

            self._font_config = FontConfiguration()
            built = fonts.installed()
            if built:
                rules = "\n".join(
                    f'@font-face {{ font-family: "{font.notice_family}"; src: url("{path.resolve().as_uri()}"); '
                    f"font-weight: {font.weight}; }}" for font, path in built)
                # our own CSS naming our own files: the only place a file URL is fetched
                self._font_faces = [weasyprint.CSS(string=rules, font_config=self._font_config,
                                                   url_fetcher=URLFetcher(allowed_protocols={"file"}))]
                families = dict.fromkeys((font.family, font.notice_family) for font, _path in built)
                self._aliases = [(_alias_pattern(family), notice) for family, notice in families]
            else:
                log.warning("notice fonts not built (make setup, or python -m engine.notices.fonts): "
                            "notices embed the installed CJK fonts and are several times larger")
        return weasyprint

    def warm_up(self) -> None:
        """Load WeasyPrint, the font configuration and the notice fonts now, so that the first notice of a
        process (a batch worker's) costs what every other one does."""
        with self._lock:
            weasyprint = self._weasyprint()
            families = ", ".join(f'"{family}"' for family in self.notice_fonts) or "serif"
            html = f'<p style=\'font-family: {families}\'>预热 <b>预热</b> 0123</p>'
            weasyprint.HTML(string=html, base_url=None).render(stylesheets=self._font_faces,
                                                               font_config=self._font_config).write_pdf()

    def _with_notice_fonts(self, css: str) -> str:
        """Name the built notice font before each installed family it was cut from (which stays as the
        fallback for characters outside its set)."""
        for pattern, notice in self._aliases:
            css = pattern.sub(f'"{notice}", \\g<0>', css)
        return css

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
                if len(self._jinja) >= MAX_CACHED:
                    self._jinja.clear()
                env = self._jinja.setdefault(catalog.content_sha256, env)
        return env

    def _stylesheets(self, catalog: NoticeCatalog, names: Iterable[str]) -> list:
        weasyprint = self._weasyprint()
        from weasyprint.urls import URLFetcher

        sheets = list(self._font_faces)
        for name in names:
            text = catalog.file(name)
            if text is None:
                raise ValidationError(f"样式表 {name} 不存在")
            key = hashlib.sha256(text.encode("utf-8")).hexdigest()
            sheet = self._css.get(key)
            if sheet is None:
                sheet = weasyprint.CSS(string=self._with_notice_fonts(text), font_config=self._font_config,
                                       url_fetcher=URLFetcher(allowed_protocols={"data"}))
                if len(self._css) >= MAX_CACHED:
                    self._css.clear()
                self._css[key] = sheet
            sheets.append(sheet)
        return sheets

    def render(self, html: str, catalog: NoticeCatalog, stylesheet_names: Iterable[str] | None = None) -> RenderedPdf:
        """Lay out html with the catalog's stylesheets; find the seal (``id="seal"``) for the signature box."""
        with self._lock:
            weasyprint = self._weasyprint()
            from weasyprint.urls import URLFetcher

            sheets = self._stylesheets(catalog, catalog.stylesheets if stylesheet_names is None else stylesheet_names)
            fetcher = URLFetcher(allowed_protocols={"data"})
            document = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher).render(
                stylesheets=sheets, font_config=self._font_config)
            seal_page = seal_box = None
            for index, page in enumerate(document.pages):
                if SEAL_ANCHOR in page.anchors:
                    x1, y1, x2, y2 = page.anchors[SEAL_ANCHOR]
                    height_pt = page.height * CSS_PX_TO_PT
                    seal_page = index
                    seal_box = (x1 * CSS_PX_TO_PT, height_pt - y2 * CSS_PX_TO_PT,
                                x2 * CSS_PX_TO_PT, height_pt - y1 * CSS_PX_TO_PT)
            pdf = document.write_pdf()
        return RenderedPdf(pdf, len(document.pages), seal_page, seal_box)


RENDERER = NoticeRenderer()
