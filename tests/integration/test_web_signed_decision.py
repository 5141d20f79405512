"""The task page sends the household's signature (农户签字) with the decision: one POST stores both, or neither."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.models import Attachment, Case
from engine.runtime.signatures import BLANK_MESSAGE, MAX_SIGNATURE_BYTES, MISSING_MESSAGE

FORM = {k: ("on" if v is True else str(v)) for k, v in D.HOUSEHOLD_CHECK.items()}


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _png(width: int = 600, height: int = 200, colour=(255, 255, 255, 255), noise: bool = False) -> bytes:
    img = Image.new("RGBA", (width, height), colour)
    if noise:
        img = Image.frombytes("RGB", (width, height), random.Random(3).randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _state(db, app, case_id: int):
    """What a refused request must leave as it was: the case, its tasks and history, every attachment and
    every stored file."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        return (case.lock_version, case.state, [(r.id, r.status) for r in work.inbox.case_tasks(case_id)],
                [e.id for e in work.inbox.case_history(case_id)],
                work.session.scalar(select(func.count(Attachment.id))), _files(app))


def _post(client, token: str, task_id: int, **extra):
    """The task form posted as the browser does (multipart), the body encoded in memory (the test client's
    own encoder spools a large body to a temporary file it never closes)."""
    fields = {"csrf_token": token, "action": "approve", "opinion": "入户核查属实", **FORM, **extra}
    values = MultiDict({k: FileStorage(v[0], v[1], content_type=v[2]) if isinstance(v, tuple) else v for k, v in fields.items()})
    boundary, body = encode_multipart(values)
    return client.post(f"/tasks/{task_id}", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def _at_household_check(db, app, client_for, csrf_token):
    """A new case at 入户核查 with the village cadre's client on its task page: (case id, task row, client,
    CSRF token, the state before anything is posted)."""
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")
    return case_id, row, village, token, _state(db, app, case_id)


def _files(app) -> set[Path]:
    """The files in the app's attachment store (content-addressed, shared by the tests of this process)."""
    return {p for p in Path(app.config["XIANGFLOW_STORAGE_DIR"]).rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["pad", "file"])
def test_one_post_with_the_signature_and_the_decision_stores_the_signature_and_completes_the_step(
        db, app, client_for, csrf_token, how):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'name="signature_data"' in page
    token = csrf_token(village, f"/tasks/{row.id}")
    png = D.signature_png(5)
    sent = ({"signature_data": _data_url(png)} if how == "pad"
            else {"signature": (io.BytesIO(png), "签字.png", "image/png")})  # the no-JS file input

    response = _post(village, token, row.id, **sent)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/cases/{case_id}")
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]
    with db.uow() as work:
        signature = work.signatures.latest(row.id)
        assert (signature.kind, signature.case_id, signature.content_type) == ("signature", case_id, "image/png")
        history = [(e.action, e.task_id, e.user.username) for e in work.inbox.case_history(case_id)]
    assert history[-2:] == [("attachment_added", row.id, "demo_village"), ("approve", row.id, "demo_village")]
    township = client_for("demo_township")
    case_page = township.get(f"/cases/{case_id}").get_data(as_text=True)
    image_url = f"/attachments/{signature.id}"
    assert 'data-testid="history-signature"' in case_page and image_url in case_page
    assert township.get(image_url).data == png


BAD = {
    "not_png_data_url": ({"signature_data": "data:image/gif;base64," + base64.b64encode(b"GIF89a" + bytes(99)).decode()},
                         "签字必须是 PNG 图片"),
    "broken_base64": ({"signature_data": "data:image/png;base64,iVBOR!!"}, "签字必须是 PNG 图片"),
    "disguised_file": ({"signature": (io.BytesIO(b"GIF89a" + bytes(300)), "签字.png", "image/png")},
                       "签字必须是 PNG 图片"),
    "damaged_png": ({"signature_data": _data_url(_png()[:60])}, "签字图片已损坏或不是有效的 PNG"),
    "oversized_file": ({"signature": (io.BytesIO(_png(900, 400, noise=True)), "签字.png", "image/png")},
                       f"签字图片不能超过 {MAX_SIGNATURE_BYTES // 1024} KB"),
    "empty_canvas": ({"signature_data": _data_url(_png())}, BLANK_MESSAGE),
    "transparent_canvas": ({"signature_data": _data_url(_png(colour=(0, 0, 0, 0)))}, BLANK_MESSAGE),
    "empty_file": ({"signature": (io.BytesIO(b""), "签字.png", "image/png")}, "签字图片为空"),
}


@pytest.mark.parametrize(("sent", "message"), list(BAD.values()), ids=list(BAD))
def test_a_bad_signature_sent_with_the_decision_is_refused_with_its_reason_and_nothing_changes(
        db, app, client_for, csrf_token, sent, message):
    case_id, row, village, token, before = _at_household_check(db, app, client_for, csrf_token)
    response = _post(village, token, row.id, **sent)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'data-testid="signature-error"' in page and message in page
    assert 'name="signature_data" value=""' in page  # a refused drawing is not offered again
    assert _state(db, app, case_id) == before


def test_a_signature_too_large_for_a_form_field_is_refused_before_the_engine(
        db, app, client_for, csrf_token):
    case_id, row, village, token, before = _at_household_check(db, app, client_for, csrf_token)
    response = _post(village, token, row.id, signature_data="data:image/png;base64," + "A" * 600_000)
    assert response.status_code == 413 and "上传内容过大" in response.get_data(as_text=True)
    assert _state(db, app, case_id) == before


def test_a_step_that_requires_a_signature_refuses_the_decision_without_one(
        db, app, client_for, csrf_token):
    case_id, row, village, token, before = _at_household_check(db, app, client_for, csrf_token)
    response = _post(village, token, row.id, signature_data="")
    assert response.status_code == 422 and MISSING_MESSAGE in response.get_data(as_text=True)
    assert _state(db, app, case_id) == before


def test_a_refused_decision_stores_no_signature_and_the_page_offers_the_drawing_again(
        db, app, client_for, csrf_token):
    case_id, row, village, token, before = _at_household_check(db, app, client_for, csrf_token)
    drawn = _data_url(D.signature_png(2))
    response = _post(village, token, row.id, signature_data=drawn, industry_employment="")  # a required field left out
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'data-testid="signature-error"' not in page
    assert f'name="signature_data" value="{drawn}"' in page and f'src="{drawn}"' in page
    assert "已签名,提交时一并保存" in page
    assert _state(db, app, case_id) == before


def test_another_regions_cadre_cannot_sign_and_complete_the_task(
        db, app, client_for, csrf_token):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    other = client_for("demo_other_village")
    token = csrf_token(other, "/")
    before = _state(db, app, case_id)
    response = _post(other, token, row.id, signature_data=_data_url(D.signature_png()))
    assert response.status_code == 404
    assert _state(db, app, case_id) == before


def test_a_signature_sent_to_a_step_that_takes_none_is_refused(
        db, app, client_for, csrf_token):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (review,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{review.id}")
    before = _state(db, app, case_id)
    response = village.post(f"/tasks/{review.id}", content_type="multipart/form-data", data={
        "csrf_token": token, "action": "approve", "opinion": "同意", "signature_data": _data_url(D.signature_png()),
        **{k: str(v) for k, v in D.VILLAGE_REVIEW.items()}})
    assert response.status_code == 422 and "此步骤无需签字" in response.get_data(as_text=True)
    assert _state(db, app, case_id) == before


@pytest.mark.parametrize("colour", [(255, 255, 255, 255), (0, 0, 0, 0), (20, 20, 60, 255)],
                         ids=["white", "transparent", "one_colour"])
def test_the_engine_refuses_a_blank_signature_from_any_caller(db, colour):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.signatures.add_signature(row.id, db.actor("demo_village"), _png(colour=colour))
    assert info.value.errors == {"signature": BLANK_MESSAGE}
