"""农户签字 on the 入户核查 task page in headless Chromium on a phone (375×812): refused unsigned, drawn, and
sent with the decision in one request; a decision refused for another reason keeps the drawing and stores nothing."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from engine.bootstrap import DEMO_PASSWORD
from engine.demo_data import signature_png
from engine.models import Attachment
from tests.e2e.forms_support import fill_household_check
from tests.e2e.signature_support import draw_on_pad, sign_on_pad

pytestmark = pytest.mark.e2e


def signatures(db, task_id: int) -> list[bytes]:
    with db.uow() as work:
        rows = work.session.scalars(select(Attachment).where(Attachment.task_id == task_id).order_by(Attachment.id))
        return [(db.storage_dir / a.sha256[:2] / a.sha256).read_bytes() for a in rows]


@pytest.mark.parametrize("touch", [False, True], ids=["mouse", "touch"])
def test_the_household_signs_on_the_phone_and_one_submit_stores_the_signature_with_the_decision(
        db, browser, live_server, login, touch):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 375, "height": 812},
                                  has_touch=touch)
    page = context.new_page()
    try:
        login(page, "demo_village")
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url.removeprefix(live_server)) if r.method == "POST" else None)
        page.goto(f"/tasks/{row.id}")
        expect(page.get_by_test_id("signature-pad")).to_contain_text("农户签字")
        expect(page.get_by_test_id("signature-status")).to_have_text("尚未签字")
        assert page.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [375, 375]
        pad = page.get_by_test_id("signature-canvas").bounding_box()
        assert pad is not None and pad["x"] >= 0 and pad["x"] + pad["width"] <= 375

        fill_household_check(page, opinion="入户核查完毕,农户已签字。")  # submitted unsigned: refused, nothing moves
        page.get_by_role("button", name="提交").click()
        expect(page.get_by_test_id("signature-error")).to_have_text("请先由农户签字")
        assert [t.id for t in db.open_tasks(case_id)] == [row.id]

        draw_on_pad(page, touch)
        page.get_by_role("button", name="清除").click()  # a clear wipes the drawing: nothing would be sent
        expect(page.get_by_test_id("signature-status")).to_have_text("尚未签字")

        sign_on_pad(page, touch)  # drawn, then a decision refused for another reason: the drawing is kept
        page.locator("#f_industry_employment").fill("")
        page.get_by_role("button", name="提交").click()
        expect(page.locator('[data-field="industry_employment"] .field-error')).to_be_visible()
        expect(page.get_by_test_id("signature-status")).to_have_text("已签名,提交时一并保存")
        expect(page.get_by_test_id("signature-preview")).to_be_visible()
        assert signatures(db, row.id) == [] and [t.id for t in db.open_tasks(case_id)] == [row.id]

        posts.clear()
        fill_household_check(page, opinion="入户核查完毕,农户已签字。")
        page.get_by_role("button", name="提交").click()
        expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
        assert posts == [f"/tasks/{row.id}"]  # one request carried the signature and the decision
        expect(page.get_by_test_id("current-steps")).to_have_text("民主评议")
        (png,) = signatures(db, row.id)
        with Image.open(io.BytesIO(png)) as img:
            assert (img.format, img.size) == ("PNG", (600, 200))
            assert img.convert("L").getextrema()[0] < 100  # dark strokes on white, not an empty canvas
        image = page.get_by_test_id("history-signature").locator("img")
        expect(image).to_have_count(1)
        expect(image).to_have_js_property("naturalWidth", 600)  # the stored PNG really loads
    finally:
        context.close()


def test_without_scripts_the_task_form_takes_a_signature_file_with_the_decision(db, browser, live_server, login):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 375, "height": 812},
                                  java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("用户名").fill("demo_village")
        page.get_by_label("密码").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.goto(f"/tasks/{row.id}")
        expect(page.get_by_test_id("signature-canvas")).to_be_hidden()  # a pad that cannot draw is not offered
        fill_household_check(page)
        png = signature_png(4)
        page.get_by_label(re.compile("请选择签字图片")).set_input_files(
            {"name": "签字.png", "mimeType": "image/png", "buffer": png})
        page.get_by_role("button", name="提交").click()
        expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
        assert signatures(db, row.id) == [png]
        assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]
    finally:
        context.close()
