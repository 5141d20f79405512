"""Sharing procedures as zip folders: export then import round-trips; a malicious zip is refused whole
(size, entry count, zip bomb, zip slip, absolute paths, links, encryption, hostile XML, unknown files)
and nothing is stored; the refusal is recorded in the audit log."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import func, select

from engine.core.errors import DefinitionError
from engine.models import AuditEvent, ProcedureDraft
from engine.studio.service import MAX_ZIP_BYTES, read_zip
from tests.integration.studio_support import admin, deploy, draft_with, edu_files, new_code, studio, sysadmin, zip_of


def _folder(code: str) -> dict[str, str]:
    files = edu_files(code)
    entries = {f"{code}/procedure.json": files["procedure.json"], f"{code}/{code}.bpmn": files[f"bpmn/{code}.bpmn"]}
    for key, text in files.items():
        if key.startswith("form/"):
            entries[f"{code}/forms/{key[5:]}.json"] = text
    return entries


def test_export_then_import_round_trips_a_procedure(db):
    code = new_code()
    version_id, _n, _c = deploy(db, draft_with(db, edu_files(code)))
    with db.uow() as work:
        name, data = studio(work).export_version(admin(db), version_id)
    assert name == f"{code}-v1.zip"
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert f"{code}/procedure.json" in names and f"{code}/{code}.bpmn" in names
    assert f"{code}/forms/{code}/school_survey.json" in names
    with db.uow() as work:
        draft, problems = studio(work).import_zip(admin(db), data)
        assert problems == [] and draft.source == "import" and draft.code == code
        assert draft.files == work.definitions.latest(code).files
        draft_id = draft.id
    assert deploy(db, draft_id) == (version_id, 1, False)  # same content, same version


def test_exported_shipped_procedure_carries_its_notice_templates(db):
    with db.uow() as work:
        version = work.definitions.latest("monitoring_exit")
        _name, data = studio(work).export_version(sysadmin(db), version.id)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "monitoring_exit/notices/notices.json" in names
    with db.uow() as work:
        draft, problems = studio(work).import_zip(sysadmin(db), data)
        assert problems == []
        assert "template/notices.json" in draft.files


def test_an_imported_zip_with_problems_becomes_a_draft_that_cannot_be_deployed(db):
    code = new_code()
    entries = _folder(code)
    entries[f"{code}/{code}.bpmn"] = entries[f"{code}/{code}.bpmn"].replace("(county_department)", "(no_such_role)")
    with db.uow() as work:
        draft, problems = studio(work).import_zip(admin(db), zip_of(entries))
        draft_id = draft.id
    # the lane, and the user task it holds (deploy and the studio run one set of checks: deploy names the task)
    assert [p.element_id for p in problems] == ["Lane_county", "county_review"]
    from engine.studio.service import DraftProblems

    with pytest.raises(DraftProblems):
        deploy(db, draft_id)


BOMB = b"\0" * (1024 * 1024 + 512 * 1024)


def _malicious(code: str) -> dict[str, bytes]:
    base = _folder(code)
    xxe = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&x;</bpmn:definitions>')
    return {
        "zip slip": zip_of({**base, f"{code}/../../../../tmp/evil.bpmn": "<x/>"}),
        "zip slip at the top": zip_of({**base, "../evil.json": "{}"}),
        "absolute path": zip_of({**base, "/etc/cron.d/evil": "x"}),
        "windows path": zip_of({**base, "C:\\evil\\x.bpmn": "x"}),
        "symlink": zip_of({**base, f"{code}/forms/link.json": "/etc/passwd"}, symlinks=[f"{code}/forms/link.json"]),
        "zip bomb": zip_of({**base, f"{code}/forms/{code}/huge.json": BOMB}),
        "oversize entry": zip_of({**base, f"{code}/big.dmn": b"<x>" + b"a" * (2 * 1024 * 1024) + b"</x>"},
                                 compression=zipfile.ZIP_STORED),
        "too many entries": zip_of({**base, **{f"{code}/notices/n{i}.md": "x" for i in range(200)}}),
        "encrypted entry": zip_of(base, flag_bits={f"{code}/procedure.json": 0x1}),
        "xxe in the diagram": zip_of({**base, f"{code}/{code}.bpmn": xxe}),
        "python file": zip_of({**base, f"{code}/evil.py": "import os"}),
        "not utf-8": zip_of({**base, f"{code}/forms/{code}/gbk.json": "{\"a\": \"中文\"}".encode("gbk")}),
        "broken json": zip_of({**base, f"{code}/forms/{code}/school_survey.json": "{not json"}),
        "duplicate entry": zip_of({**base, f"{code}/PROCEDURE.json": "{}"}),
        "two diagrams": zip_of({**base, f"{code}/other.bpmn": base[f"{code}/{code}.bpmn"]}),
        "not a zip": b"PK\x03\x04 this is not really a zip",
        "too large": b"PK" + b"\0" * (MAX_ZIP_BYTES + 1),
    }


KINDS = list(_malicious("x_probe"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_malicious_zip_is_refused_and_nothing_is_stored(db, kind, client_for):
    code = new_code()
    data = _malicious(code)[kind]
    with pytest.raises(DefinitionError) as refused:
        with db.uow() as work:
            studio(work).import_zip(admin(db), data)
    assert refused.value.problems, kind
    with db.uow() as work:
        drafts = work.session.scalar(select(func.count(ProcedureDraft.id)))

    admin_client = client_for("demo_admin")
    page = admin_client.get("/studio/")
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    body, content_type = multipart({"csrf_token": token}, "file", "shared.zip", data)
    response = admin_client.post("/studio/import", data=body, content_type=content_type)
    assert response.status_code == 422, kind
    body = response.get_data(as_text=True)
    assert "压缩包被拒绝" in body or "文件" in body
    with db.uow() as work:
        assert work.session.scalar(select(func.count(ProcedureDraft.id))) == drafts
        refusal = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "studio_import_refused")
                                       .order_by(AuditEvent.id.desc())).first()
        assert refusal is not None and refusal.case_id is None and refusal.opinion


def multipart(fields: dict[str, str], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body built in memory (the test client spools large uploads to a temp file it
    never closes)."""
    boundary = "xfboundary7MA4YWxkTrZu0gW"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: application/zip\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_read_zip_accepts_a_flat_folder_and_ignores_directory_entries():
    code = "flat_example"
    entries = {k.split("/", 1)[1]: v for k, v in _folder(code).items()}
    buffer = io.BytesIO(zip_of(entries))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(zipfile.ZipInfo("forms/"), b"")
    files = read_zip(buffer.getvalue())
    assert sorted(files) == sorted(edu_files(code))
