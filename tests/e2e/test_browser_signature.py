"""农户签字 on the 入户核查 task page in headless Chromium: refused unsigned, drawn, saved, shown on the case."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from engine.models import Attachment
from tests.e2e.forms_support import fill_household_check
from tests.e2e.signature_support import draw_on_pad, sign_on_pad

pytestmark = pytest.mark.e2e


def signatures(db, task_id: int) -> list[bytes]:
    with db.uow() as work:
        rows = work.session.scalars(select(Attachment).where(Attachment.task_id == task_id).order_by(Attachment.id))
        return [(db.storage_dir / a.sha256[:2] / a.sha256).read_bytes() for a in rows]


@pytest.mark.parametrize("touch", [False, True], ids=["mouse", "touch"])
def test_the_household_signs_on_the_pad_and_the_case_page_shows_the_signature_with_the_step(
        db, user_page, live_server, touch):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    page = user_page("demo_village")
    page.goto(f"/tasks/{row.id}")
    expect(page.get_by_test_id("signature-pad")).to_contain_text("农户签字")
    expect(page.get_by_test_id("signature-status")).to_have_text("尚未签字")

    fill_household_check(page, opinion="入户核查完毕,农户已签字。")  # submitted unsigned: refused, nothing moves
    page.get_by_role("button", name="提交").click()
    expect(page.get_by_test_id("signature-error")).to_have_text("请先由农户签字")
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]

    page.get_by_test_id("signature-save").click()  # nothing drawn yet: nothing is sent
    expect(page.get_by_test_id("signature-status")).to_have_text("请先在框内签名")
    draw_on_pad(page, touch)
    page.get_by_role("button", name="清除").click()  # a clear wipes the drawing
    page.get_by_test_id("signature-save").click()
    expect(page.get_by_test_id("signature-status")).to_have_text("请先在框内签名")
    assert signatures(db, row.id) == []

    sign_on_pad(page, touch)
    (png,) = signatures(db, row.id)
    with Image.open(io.BytesIO(png)) as img:
        assert (img.format, img.size) == ("PNG", (600, 200))
        assert img.convert("L").getextrema()[0] < 100  # dark strokes on white, not an empty canvas

    fill_household_check(page, opinion="入户核查完毕,农户已签字。")  # the 422 page kept the values, but the fields are filled again to be sure
    page.get_by_role("button", name="提交").click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(page.get_by_test_id("current-steps")).to_have_text("民主评议")
    image = page.get_by_test_id("history-signature").locator("img")
    expect(image).to_have_count(1)
    expect(image).to_have_js_property("naturalWidth", 600)  # the stored PNG really loads
