"""What an uploaded file must be, decided on its content (issue 15): opened and checked, not sniffed.

- JPEG/PNG: decoded by Pillow (``verify`` then ``load``), the format must match the declared type, at most
  MAX_PIXELS pixels, and a JPEG must end its scan with EOI (WeasyPrint turns on Pillow's
  LOAD_TRUNCATED_IMAGES, so ``load`` alone would accept a cut-off file).
- PDF: ``%PDF-1.x`` header, ``startxref`` pointing at an ``xref`` table (with ``trailer``) or an XRef
  stream, ``%%EOF`` at the end, and pypdf finds at least one page: an HTML file starting with ``%PDF-``
  is refused.
- DOCX/XLSX: opened as zips: at most MAX_ZIP_MEMBERS members, MAX_EXPANDED_BYTES expanded in all, no
  member expanding more than MAX_RATIO times (above 1 MB), no encryption, and the parts that make the
  format: ``[Content_Types].xml`` declaring the main document type and ``word/document.xml`` or
  ``xl/workbook.xml``. A plain zip renamed .xlsx is refused.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

from engine.core.errors import ValidationError

MAX_PIXELS = 40_000_000
MAX_ZIP_MEMBERS = 1_000
MAX_EXPANDED_BYTES = 100 * 1024 * 1024
MAX_RATIO = 100
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OFFICE_PARTS = {
    DOCX: ("word/document.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"),
    XLSX: ("xl/workbook.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"),
}
EXTENSIONS = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "application/pdf": (".pdf",),
    DOCX: (".docx",),
    XLSX: (".xlsx",),
}
REFUSED = "只接受 JPG、PNG、PDF、DOCX、XLSX 文件"
NOT_THIS_TYPE = "内容不是所声明的文件类型"  # answered as REFUSED alone: the file is of another kind altogether


def check_upload(file_name: str, content: bytes, content_type: str,
                 pixels: Callable[[Any], None] | None = None) -> None:
    """Refuse a file whose name, declared type and content do not agree on an allowed format.

    ``pixels``: a caller's own check of an image's decoded pixels (a Pillow image), run on the one decode
    (a signature's blank check); whatever it raises goes to the caller.

    :raises ValidationError: ``file`` → why (a type not allowed, or a damaged or disguised file).
    """
    extensions = EXTENSIONS.get(content_type)
    if extensions is None or not file_name.lower().endswith(extensions):
        raise ValidationError("附件类型不允许", {"file": REFUSED})
    if content_type in ("image/jpeg", "image/png"):
        problem = image_problem(content, "JPEG" if content_type == "image/jpeg" else "PNG", pixels)
    elif content_type == "application/pdf":
        problem = pdf_problem(content)
    else:
        problem = office_problem(content, content_type)
    if problem:
        raise ValidationError("附件类型不允许", {"file": REFUSED if problem == NOT_THIS_TYPE else f"{REFUSED}:{problem}"})


def image_problem(content: bytes, expected: str, pixels: Callable[[Any], None] | None = None) -> str | None:
    """Why content is not a whole image of the expected Pillow format, or None (``pixels``: as ``check_upload``)."""
    from PIL import Image

    magic = b"\xff\xd8\xff" if expected == "JPEG" else b"\x89PNG\r\n\x1a\n"
    if not content.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        return NOT_THIS_TYPE
    if not content.startswith(magic):
        return f"内容不是 {expected} 图片"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                if img.format != expected:
                    return f"内容不是 {expected} 图片"
                width, height = img.size
                if width * height > MAX_PIXELS:
                    return "图片像素过多"
                img.verify()
            with Image.open(io.BytesIO(content)) as img:
                img.load()
                if pixels is not None:
                    pixels(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            zlib.error, EOFError):
        return "图片已损坏或不完整"
    if expected == "JPEG" and content.rfind(b"\xff\xd9") < content.find(b"\xff\xda"):
        return "图片已损坏或不完整"
    return None


_STARTXREF = re.compile(rb"startxref\s+(\d{1,12})\s+%%EOF\s*$")


def pdf_problem(content: bytes) -> str | None:
    """Why content is not a structurally whole PDF, or None."""
    if not re.match(rb"%PDF-[12]\.\d", content):
        return NOT_THIS_TYPE
    match = _STARTXREF.search(content[-2048:])
    if not match:
        return "PDF 结构不完整(缺少 startxref 或 %%EOF)"
    offset = int(match.group(1))
    if offset >= len(content):
        return "PDF 结构不完整(交叉引用位置无效)"
    at = content[offset:offset + 512]
    if at.startswith(b"xref"):
        if b"trailer" not in content[offset:]:
            return "PDF 结构不完整(缺少 trailer)"
    elif not (re.match(rb"\d+\s+\d+\s+obj", at) and b"/XRef" in at):
        return "PDF 结构不完整(交叉引用位置无效)"
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pages = len(PdfReader(io.BytesIO(content)).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            zlib.error, OSError):
        return "PDF 无法解析"
    if pages < 1:
        return "PDF 没有页面"
    return None


def office_problem(content: bytes, content_type: str) -> str | None:
    """Why content is not a DOCX/XLSX of the declared type within the zip limits, or None."""
    main_part, main_type = OFFICE_PARTS[content_type]
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return NOT_THIS_TYPE if not content.startswith(b"PK") else "不是有效的 Office 文件"
    if len(infos) > MAX_ZIP_MEMBERS:
        return f"文件内条目超过 {MAX_ZIP_MEMBERS} 个"
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            return "不接受加密的文件"
        total += info.file_size
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            return "压缩比异常(疑似压缩炸弹)"
    if total > MAX_EXPANDED_BYTES:
        return f"解压后超过 {MAX_EXPANDED_BYTES // 1024 // 1024} MB"
    names = {info.filename for info in infos}
    if "[Content_Types].xml" not in names or main_part not in names:
        return "缺少 Office 文档的必要部分"
    try:
        with archive.open("[Content_Types].xml") as handle:
            types = handle.read(256 * 1024)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError):
        return "文件已损坏"
    if main_type.encode() not in types:
        return "文件内容与类型不符"
    return None
