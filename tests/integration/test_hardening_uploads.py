"""Issue 15: uploads are opened and checked, not sniffed by their first bytes; a refusal stores nothing.
SQLite and PostgreSQL (through the case's attachment API)."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from engine.core.errors import ValidationError
from engine.operations.uploads import DOCX, XLSX, check_upload
from tests.integration import upload_samples as S


@pytest.mark.parametrize("name, content, content_type", [
    ("照片.png", S.png(), "image/png"),
    ("照片.jpg", S.jpeg(), "image/jpeg"),
    ("证明.pdf", S.pdf(), "application/pdf"),
    ("记录.docx", S.docx(), DOCX),
    ("名册.xlsx", S.xlsx(), XLSX),
], ids=["png", "jpeg", "pdf", "docx", "xlsx"])
def test_real_files_of_each_type_are_accepted(name, content, content_type):
    check_upload(name, content, content_type)


def _bomb() -> bytes:
    """A .docx that is 1 MB-ish compressed and expands to far more than the limit."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", S.CONTENT_TYPES)
        archive.writestr("word/document.xml", S.DOCUMENT)
        for i in range(3):
            archive.writestr(f"word/media/big{i}.bin", b"\0" * (60 * 1024 * 1024))
    return out.getvalue()


REFUSED = [
    ("html.pdf", b"%PDF-1.7\n<html><script>alert(1)</script></html>\n%%EOF\n", "application/pdf", "PDF 结构不完整"),
    ("cut.pdf", S.pdf()[: len(S.pdf()) // 2], "application/pdf", "PDF 结构不完整"),
    ("bad-xref.pdf", S.pdf().replace(b"startxref\n", b"startxref\n9"), "application/pdf", "PDF"),
    ("plain.xlsx", S.zip_of({"data.csv": b"a,b\n1,2\n"}), XLSX, "缺少 Office 文档的必要部分"),
    ("docx-as.xlsx", S.docx(), XLSX, "缺少 Office 文档的必要部分"),
    ("bomb.docx", _bomb(), DOCX, "压缩"),
    ("many.docx", S.zip_of({"[Content_Types].xml": S.CONTENT_TYPES.encode(), "word/document.xml": b"x",
                            **{f"p{i}.xml": b"" for i in range(1001)}}), DOCX, "条目超过"),
    ("wrong-type.docx", S.zip_of({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"x"}), DOCX, "类型不符"),
    ("not-zip.docx", b"PK\x03\x04garbage", DOCX, "不是有效的 Office 文件"),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", "图片已损坏"),
    ("cut.png", S.png()[:-20], "image/png", "图片已损坏"),
    ("jpeg-as.png", S.jpeg(), "image/png", "内容不是 PNG"),
    ("cut.jpg", S.jpeg()[: len(S.jpeg()) - 30], "image/jpeg", "图片已损坏"),
    ("script.png", b"<script>alert(1)</script>", "image/png", "只接受 JPG、PNG、PDF、DOCX、XLSX 文件"),
    ("name.exe", S.pdf(), "application/pdf", ""),
]


@pytest.mark.parametrize("name, content, content_type, why", REFUSED, ids=[r[0] for r in REFUSED])
def test_disguised_damaged_or_oversized_files_are_refused_saying_why(name, content, content_type, why):
    started = time.perf_counter()
    with pytest.raises(ValidationError) as refused:
        check_upload(name, content, content_type)
    assert time.perf_counter() - started < 2
    assert why in refused.value.errors["file"]


def test_an_html_file_starting_with_pdf_is_refused_through_the_api_and_nothing_is_stored(
        db, client_for, exit_case, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before, stored = snapshot(), sorted(db.storage_dir.rglob("*"))
    village = client_for("demo_village")
    fake = b"%PDF-1.4\n<!doctype html><html><body onload=alert(1)></body></html>"
    refused = village.post(f"/api/v1/cases/{case_id}/attachments",
                           data={"file": (io.BytesIO(fake), "核查.pdf", "application/pdf"), "task_id": str(row.id)},
                           content_type="multipart/form-data")
    assert refused.status_code == 422
    assert "PDF" in refused.get_json()["errors"]["file"]
    assert snapshot() == before
    assert sorted(db.storage_dir.rglob("*")) == stored


def test_a_real_pdf_is_stored_through_the_api(db, client_for, exit_case):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    accepted = client_for("demo_village").post(
        f"/api/v1/cases/{case_id}/attachments",
        data={"file": (io.BytesIO(S.pdf()), "核查.pdf", "application/pdf"), "task_id": str(row.id)},
        content_type="multipart/form-data")
    assert accepted.status_code == 201, accepted.get_data(as_text=True)
    assert accepted.get_json()["content_type"] == "application/pdf"
