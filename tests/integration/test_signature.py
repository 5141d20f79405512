"""Handwritten signature (农户签字) on the 四步法 household check: engine, API and task/case pages."""

from __future__ import annotations

import io
import random
from datetime import timedelta

import pytest
from PIL import Image, ImageFile
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core import settings
from engine.core.errors import ConflictError, DefinitionError, NotFoundError, ValidationError
from engine.models import Attachment, AuditEvent, Case, TaskRow
from engine.procedures.definitions import bundle_from_files, compile_bundle, read_folder
from engine.runtime.signatures import MAX_SIGNATURE_BYTES, MISSING_MESSAGE


def _png(width: int = 400, height: int = 150, noise: bool = False) -> bytes:
    img = Image.new("RGB", (width, height), "white")
    if noise:
        img = Image.frombytes("RGB", (width, height), random.Random(1).randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _fingerprint(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        return (case.lock_version, case.state, [(r.id, r.status) for r in work.inbox.case_tasks(case_id)],
                [e.id for e in work.inbox.case_history(case_id)],
                work.session.scalar(select(func.count(Attachment.id))))


def _signature_audit(db, task_id: int) -> list[AuditEvent]:
    with db.uow() as work:
        events = work.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "attachment_added", AuditEvent.task_id == task_id).order_by(AuditEvent.id)).all()
        return [e for e in events if (e.data_diff or {}).get("kind") == "signature"]


def test_household_check_is_refused_without_the_households_signature_then_accepted_once_signed(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK, sign=False)
    assert info.value.errors == {"signature": MISSING_MESSAGE} and MISSING_MESSAGE == "请先由农户签字"
    assert _fingerprint(db, case_id) == before  # refused: nothing changed

    png = D.signature_png(7)
    with db.uow() as work:
        attachment = work.signatures.add_signature(row.id, db.actor("demo_village"), png)
        assert (attachment.kind, attachment.task_id, attachment.content_type) == ("signature", row.id, "image/png")
    (event,) = _signature_audit(db, row.id)
    assert (event.step, event.data_diff["attachment_id"], event.user.username) == ("入户核查", attachment.id,
                                                                                   "demo_village")
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK, sign=False)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]
    with db.uow() as work:
        stored, content = work.operations.read_attachment(attachment.id, db.actor("demo_township"))
        assert content == png and work.signatures.latest_by_task(case_id) == {row.id: stored}


def test_signing_again_adds_a_new_attachment_the_latest_counts_and_every_one_is_kept(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = db.actor("demo_village")
    with db.uow() as work:
        first = work.signatures.add_signature(row.id, village, D.signature_png(1)).id
    db.clock.advance(timedelta(minutes=2))
    with db.uow() as work:
        second = work.signatures.add_signature(row.id, village, D.signature_png(2)).id
    with db.uow() as work:
        assert work.signatures.latest(row.id).id == second > first
        kept = work.session.scalars(select(Attachment.id).where(Attachment.task_id == row.id)).all()
        assert sorted(kept) == [first, second]
    assert len(_signature_audit(db, row.id)) == 2


BAD_SIGNATURES = {
    "not_png": (b"GIF89a" + b"\x00" * 200, "签字必须是 PNG 图片"),
    "jpeg": (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "签字必须是 PNG 图片"),
    "png_header_only": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "签字图片已损坏或不是有效的 PNG"),
    "truncated": (_png()[:-40], "签字图片已损坏或不是有效的 PNG"),
    "too_small": (_png(20, 10), "签字图片尺寸应在"),
    "too_wide": (_png(4100, 60), "签字图片尺寸应在"),
    "too_large": (_png(900, 400, noise=True), f"签字图片不能超过 {MAX_SIGNATURE_BYTES // 1024} KB"),
    "empty": (b"", "签字图片为空"),
}


@pytest.mark.parametrize(("content", "message"), list(BAD_SIGNATURES.values()), ids=list(BAD_SIGNATURES))
def test_a_bad_or_oversized_signature_png_is_refused_and_nothing_is_stored(db, content, message, monkeypatch):
    # as in the running app: importing WeasyPrint makes Pillow accept truncated images
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.signatures.add_signature(row.id, db.actor("demo_village"), content)
    assert info.value.errors["signature"].startswith(message)
    assert _fingerprint(db, case_id) == before
    assert not db.storage_dir.exists() or not any(p.is_file() for p in db.storage_dir.rglob("*"))


def test_a_step_that_takes_no_signature_refuses_one(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (review,) = db.open_tasks(case_id)
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.signatures.add_signature(review.id, db.actor("demo_village"), D.signature_png())
    assert info.value.errors == {"signature": "此步骤无需签字"}


def test_only_the_holder_of_the_open_task_may_capture_its_signature(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    with db.uow() as work, pytest.raises(NotFoundError):  # another township's cadre: the task does not exist
        work.signatures.add_signature(row.id, db.actor("demo_other_village"), D.signature_png())
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    with db.uow() as work, pytest.raises(ConflictError):  # done: a signature can no longer be added
        work.signatures.add_signature(row.id, db.actor("demo_village"), D.signature_png())


def test_a_returned_household_check_is_a_new_task_that_must_be_signed_again(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", "return", "请重新入户核查", return_to="household_check")
    (again,) = db.open_tasks(case_id)
    assert again.spec_name == "household_check"
    with pytest.raises(ValidationError) as info:
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK, sign=False)
    assert info.value.errors == {"signature": "请先由农户签字"}


def test_an_unknown_signature_mode_is_refused_at_deploy():
    bundle = read_folder(settings.WORKFLOWS_DIR / "monitoring_exit", settings.FORMS_DIR)
    files = dict(bundle.files)
    (name,) = [k for k in files if k.startswith("bpmn/")]
    assert 'name="signature" value="required"' in files[name]
    files[name] = files[name].replace('name="signature" value="required"', 'name="signature" value="maybe"')
    with pytest.raises(DefinitionError) as info:
        compile_bundle(bundle_from_files(files), {"village_cadre", "township_officer", "county_department",
                                                  "county_leader", "office_clerk", "admin"})
    assert any("入户核查" in element and "signature" in reason for element, reason in info.value.problems)


# ----------------------------------------------------------------------------- API
def test_api_signature_upload_then_complete_and_the_task_reports_its_signature(db, client_for):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    detail = village.get(f"/api/v1/tasks/{row.id}").json
    assert detail["signature"] == {"mode": "required", "label": "农户签字", "latest": None}

    refused = village.post(f"/api/v1/tasks/{row.id}/complete", json={"action": "approve", "data": D.HOUSEHOLD_CHECK})
    assert refused.status_code == 422 and refused.json["errors"] == {"signature": "请先由农户签字"}

    bad = village.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                       data={"kind": "signature", "task_id": str(row.id), "file": (io.BytesIO(b"not a png"), "s.png")})
    assert bad.status_code == 422 and "signature" in bad.json["errors"]
    no_task = village.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                           data={"kind": "signature", "file": (io.BytesIO(D.signature_png()), "s.png")})
    assert no_task.status_code == 422 and "task_id" in no_task.json["errors"]

    ok = village.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                      data={"kind": "signature", "task_id": str(row.id),
                            "file": (io.BytesIO(D.signature_png()), "签字.png", "image/png")})
    assert ok.status_code == 201, ok.json
    assert (ok.json["kind"], ok.json["task_id"], ok.json["content_type"]) == ("signature", row.id, "image/png")
    assert village.get(f"/api/v1/tasks/{row.id}").json["signature"]["latest"]["id"] == ok.json["id"]

    done = village.post(f"/api/v1/tasks/{row.id}/complete", json={"action": "approve", "data": D.HOUSEHOLD_CHECK})
    assert done.status_code == 200, done.json
    assert [s["step_id"] for s in done.json["current_steps"]] == ["village_review"]


def test_api_signature_for_a_task_of_another_case_is_refused(db, client_for):
    first, second = db.start_case(), db.start_case()
    (row,) = db.open_tasks(first)
    response = client_for("demo_village").post(
        f"/api/v1/cases/{second}/attachments", content_type="multipart/form-data",
        data={"kind": "signature", "task_id": str(row.id), "file": (io.BytesIO(D.signature_png()), "s.png")})
    assert response.status_code == 422 and "task_id" in response.json["errors"]
    with db.uow() as work:
        assert work.session.scalar(select(func.count(Attachment.id))) == 0


# ----------------------------------------------------------------------------- pages
def test_the_task_page_shows_the_pad_the_pad_posts_a_png_and_the_case_page_shows_it_with_the_step(
        db, client_for, csrf_token):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert "data-signature-pad" in page and "<canvas" in page and "农户签字" in page and "signature-pad.js" in page
    token = csrf_token(village, f"/tasks/{row.id}")

    refused = village.post(f"/tasks/{row.id}", data={"csrf_token": token, "action": "approve", **{
        k: ("on" if v is True else str(v)) for k, v in D.HOUSEHOLD_CHECK.items()}})
    assert refused.status_code == 422 and "请先由农户签字" in refused.get_data(as_text=True)

    no_token = village.post(f"/tasks/{row.id}/signature", content_type="multipart/form-data",
                            data={"signature": (io.BytesIO(D.signature_png()), "signature.png")})
    assert no_token.status_code == 400
    signed = village.post(f"/tasks/{row.id}/signature", content_type="multipart/form-data",
                          data={"csrf_token": token, "signature": (io.BytesIO(D.signature_png()), "signature.png")})
    assert signed.status_code == 201, signed.get_data(as_text=True)
    assert village.get(signed.json["url"]).data == D.signature_png()

    with db.uow() as work:
        work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "情况属实", D.HOUSEHOLD_CHECK)
    case_page = client_for("demo_township").get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'data-testid="history-signature"' in case_page and signed.json["url"] in case_page
    readonly = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="signature-image"' in readonly and "<canvas" not in readonly


def test_the_pad_refuses_a_bad_png_with_a_json_field_error(db, client_for, csrf_token):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")
    response = village.post(f"/tasks/{row.id}/signature", content_type="multipart/form-data",
                            data={"csrf_token": token, "signature": (io.BytesIO(b"\x89PNG\r\n\x1a\nxx"), "s.png")})
    assert response.status_code == 422 and "signature" in response.json["errors"]
    with db.uow() as work:
        assert work.session.scalar(select(func.count(TaskRow.id)).where(TaskRow.case_id == case_id)) == 1
        assert work.session.scalar(select(func.count(Attachment.id))) == 0


def test_a_signature_sent_with_the_decision_is_stored_and_the_step_completed_in_one_mutation(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    png = D.signature_png(9)
    with db.uow() as work:
        work.signatures.complete_signed(row.id, db.actor("demo_village"), png, "approve", "属实", D.HOUSEHOLD_CHECK)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]
    (event,) = _signature_audit(db, row.id)
    with db.uow() as work:
        signature = work.signatures.latest(row.id)
        assert (signature.kind, signature.case_id, event.data_diff["attachment_id"]) == ("signature", case_id,
                                                                                         signature.id)
        assert work.operations.read_attachment(signature.id, db.actor("demo_township"))[1] == png
        history = [(e.action, e.task_id) for e in work.inbox.case_history(case_id)]
    # the same history as a signature request followed by the decision: the signature first, then the approval
    assert history[-2:] == [("attachment_added", row.id), ("approve", row.id)]


@pytest.mark.parametrize("content", [BAD_SIGNATURES["truncated"][0], BAD_SIGNATURES["empty"][0]],
                         ids=["truncated", "empty"])
def test_a_refused_signature_sent_with_the_decision_leaves_the_task_open_and_stores_nothing(db, content,
                                                                                         monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info, db.uow() as work:
        work.signatures.complete_signed(row.id, db.actor("demo_village"), content, "approve", "属实",
                                        D.HOUSEHOLD_CHECK)
    assert "signature" in info.value.errors
    assert _fingerprint(db, case_id) == before


def test_only_the_holder_may_send_a_signature_with_the_decision(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    with pytest.raises(NotFoundError), db.uow() as work:
        work.signatures.complete_signed(row.id, db.actor("demo_other_village"), D.signature_png(), "approve", "属实",
                                        D.HOUSEHOLD_CHECK)
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]
