"""Office staff issue notices from the pages; anyone verifies them at /verify/<serial> without logging in,
including an upload check of the PDF; reissue supersedes; jurisdiction holds."""

from __future__ import annotations

import hashlib
import io
import re

from notices_support import PHONES, case_at, ensure_office_keys, flip_one_byte, stored
from sqlalchemy import select

from engine.models import AuditEvent

KIND_PAGE = "/notices/monitoring_exit/village_public_notice"


def _issue_from_page(client, csrf_token, case_ids, path=KIND_PAGE, values=PHONES):
    token = csrf_token(client, path)
    return client.post(f"{path}/issue", data={"csrf_token": token, "case_id": [str(i) for i in case_ids], **values})


def _serial_from(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return re.search(r"/notices/n/([A-Z0-9-]+)$", response.headers["Location"]).group(1)


def test_an_office_clerk_issues_a_village_notice_from_the_page_and_downloads_the_signed_pdf(
        db, client_for, csrf_token):
    ensure_office_keys(db)
    cases = [case_at(db, db.household(name), "village_notice") for name in ("张德明", "李秀英")]
    clerk = client_for("demo_clerk")

    index = clerk.get("/notices").get_data(as_text=True)
    assert 'data-testid="kind-village_public_notice"' in index
    page = clerk.get(KIND_PAGE).get_data(as_text=True)
    assert "张德明" in page and "冬笋街社区居民委员会" in page

    serial = _serial_from(_issue_from_page(clerk, csrf_token, cases))
    shown = clerk.get(f"/notices/n/{serial}").get_data(as_text=True)
    assert serial in shown and "签名有效,文件自签名后未被改动,签名证书可信" in shown
    assert "自建演示 CA 签发" in shown

    download = clerk.get(f"/notices/n/{serial}.pdf")
    assert download.status_code == 200 and download.mimetype == "application/pdf"
    assert hashlib.sha256(download.data).hexdigest() == stored(db, serial).sha256

    with db.uow() as work:
        events = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "notice_issued")).all()
        assert sorted(e.case_id for e in events) == sorted(cases)
        assert all(e.client_addr for e in events)
    history = clerk.get(f"/notices/cases/{cases[0]}").get_data(as_text=True)
    assert serial in history


def test_anyone_verifies_a_notice_without_logging_in_and_the_upload_check_tells_issued_from_altered(
        app, db, client_for, csrf_token):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    clerk = client_for("demo_clerk")
    serial = _serial_from(_issue_from_page(clerk, csrf_token, [case_id]))
    pdf = clerk.get(f"/notices/n/{serial}.pdf").data

    public = app.test_client()
    page = public.get(f"/verify/{serial}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "冬笋街社区居民委员会" in html and "2026-09-01" in html and "张德明" in html
    assert hashlib.sha256(pdf).hexdigest() in html and 'data-testid="verify-valid"' in html
    assert public.get(f"/verify?serial={serial.lower()}").headers["Location"].endswith(f"/verify/{serial}")
    assert public.get("/verify/XF2026-0000-0000").status_code == 404
    assert public.get(f"/notices/n/{serial}").status_code in (302, 401)  # staff pages need a login

    def upload(data: bytes):
        token = csrf_token(public, f"/verify/{serial}")
        return public.post(f"/verify/{serial}", data={"csrf_token": token, "file": (io.BytesIO(data), "notice.pdf")},
                           content_type="multipart/form-data")

    same = upload(pdf).get_data(as_text=True)
    assert 'data-match="yes"' in same and "完全一致" in same
    altered = upload(flip_one_byte(pdf)).get_data(as_text=True)
    assert 'data-match="no"' in altered and "签名无效" in altered
    assert 'data-match="no"' in upload(b"not a pdf").get_data(as_text=True)


def test_reissue_makes_a_new_serial_and_marks_the_old_one_superseded(db, app, client_for, csrf_token):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    clerk = client_for("demo_clerk")
    old = _serial_from(_issue_from_page(clerk, csrf_token, [case_id]))

    token = csrf_token(clerk, f"/notices/n/{old}")
    assert clerk.post(f"/notices/n/{old}/reissue", data={"csrf_token": token, "reason": ""}).status_code == 302
    assert clerk.get("/notices").get_data(as_text=True).count('data-testid="notice-row"') == 1  # no reason, no reissue

    response = clerk.post(f"/notices/n/{old}/reissue", data={"csrf_token": token, "reason": "户主姓名录入有误"})
    new = _serial_from(response)
    assert new != old
    assert stored(db, new).supersedes_id == stored(db, old).id
    assert 'data-testid="superseded"' in clerk.get(f"/notices/n/{old}").get_data(as_text=True)
    assert 'data-testid="verify-superseded"' in app.test_client().get(f"/verify/{old}").get_data(as_text=True)
    assert 'data-testid="verify-valid"' in app.test_client().get(f"/verify/{new}").get_data(as_text=True)
    again = clerk.post(f"/notices/n/{old}/reissue", data={"csrf_token": token, "reason": "再次"})
    assert again.headers["Location"].endswith(f"/notices/n/{old}")  # refused: already superseded
    with db.uow() as work:
        event = work.session.scalar(select(AuditEvent).where(AuditEvent.action == "notice_issued",
                                                             AuditEvent.opinion == "户主姓名录入有误"))
        assert event.data_diff["supersedes"] == old and event.data_diff["serial"] == new


def test_a_second_notice_for_a_covered_case_is_refused_and_a_case_not_yet_due_gets_none(
        db, client_for, csrf_token):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    clerk = client_for("demo_clerk")
    _serial_from(_issue_from_page(clerk, csrf_token, [case_id]))
    twice = _issue_from_page(clerk, csrf_token, [case_id])
    assert twice.status_code == 409 and "重新签发" in twice.get_data(as_text=True)

    running = _issue_from_page(client_for("demo_village"), csrf_token, [case_id], "/notices/monitoring_exit/exit_notice",
                               {"contact_phone": "0825-5421234"})
    assert running.status_code == 422 and "当前不需要退出告知书" in running.get_data(as_text=True)
    missing_phone = _issue_from_page(clerk, csrf_token, [case_at(db, db.household("李秀英"), "village_notice")], values={})
    assert missing_phone.status_code == 422 and "请填写村委会联系电话" in missing_phone.get_data(as_text=True)


def test_other_jurisdictions_and_roles_cannot_see_or_issue(db, client_for, csrf_token):
    ensure_office_keys(db)
    county_case = case_at(db, db.household("王建国"), "county_notice")  # first: passing its 公示 moves the clock
    case_id = case_at(db, db.household("张德明"), "village_notice")
    clerk = client_for("demo_clerk")
    serial = _serial_from(_issue_from_page(clerk, csrf_token, [case_id]))

    stranger = client_for("demo_other_township")
    assert stranger.get(f"/notices/n/{serial}").status_code == 404
    assert stranger.get(f"/notices/n/{serial}.pdf").status_code == 404
    token = csrf_token(stranger, "/notices")
    assert stranger.post(f"/notices/n/{serial}/reissue", data={"csrf_token": token, "reason": "x"}).status_code == 404
    assert stored(db, serial) is not None
    assert serial not in stranger.get("/notices").get_data(as_text=True)
    stranger_issue = stranger.post(f"{KIND_PAGE}/issue", data={"csrf_token": token, "case_id": [str(case_id)], **PHONES})
    assert stranger_issue.status_code == 404

    village = client_for("demo_village")  # sees the case, but only the county issues the 公告
    token = csrf_token(village, "/notices")
    forbidden = village.post("/notices/monitoring_exit/county_announcement/issue",
                             data={"csrf_token": token, "case_id": [str(county_case)], "contact_phone": "0825-5400000"})
    assert forbidden.status_code == 403
