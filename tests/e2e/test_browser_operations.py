"""Approval operations in a real browser: 退回, 撤回, 转办, 认领, 抄送, 催办 and attachments.

Each test drives a 农村危房改造 case (P1) through the engine to the step it needs
(``housing_case``), then works the operation in headless Chromium, one browser context per
user. No sleeps: every wait is Playwright's auto-waiting or ``expect``.
"""

from __future__ import annotations

import re
import struct
import zlib

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from engine.bootstrap import DEMO_PASSWORD
from engine.models import Attachment, AuditEvent, CaseCc

pytestmark = pytest.mark.e2e

CASE_TITLE = "张德明 · 农村危房改造"
TOWNSHIP = "510921107000"
ACTIVE = re.compile(r"\bactive\b")


def has_class(name: str) -> re.Pattern:
    return re.compile(rf"\b{name}\b")


def tiny_png() -> bytes:
    """A real 1×1 PNG (signature, IHDR, IDAT, IEND)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x0b\x6e\x4f")) + chunk(b"IEND", b""))


def add_township_colleague(db, username: str = "township_two", display_name: str = "宝梵镇第二位") -> str:
    """A second 乡镇乡村振兴办 officer of 宝梵镇 (the demo data have one per role)."""
    with db.uow() as work:
        work.directory.create_user(username, display_name, DEMO_PASSWORD, [("township_officer", TOWNSHIP)])
    return display_name


def display_name(db, username: str) -> str:
    return db.actor(username).display_name


def todo_row(page: Page, step: str):
    """The case's row for step in 待办 (reloaded)."""
    page.goto("/?view=todo")
    return page.get_by_test_id("task-row").filter(has_text=CASE_TITLE).filter(has_text=step)


def open_case(page: Page, case_id: int) -> None:
    page.goto(f"/cases/{case_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(CASE_TITLE)


def expect_flash(page: Page, case_id: int, text: str) -> None:
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(page.get_by_role("status")).to_have_text(text)


def count(db, model) -> int:
    with db.uow() as work:
        return work.session.scalar(select(func.count(model.id)))


# ----------------------------------------------------------------------------- 退回
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_a_return_to_an_earlier_step_needs_a_reason_which_the_returned_steps_holder_then_sees(
        db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    township = user_page("demo_township")
    todo_row(township, "镇(街道)审核").get_by_role("link", name="镇(街道)审核").click()
    expect(township.get_by_role("heading", level=1)).to_contain_text("镇(街道)审核")
    task_url = township.url
    # 农户申请 is two steps back: 村级评议 (and its 村级公示) lies between
    expect(township.get_by_label("退回到").locator("option")).to_have_text(["村级评议", "农户申请"])

    township.get_by_label("退回到").select_option(label="农户申请")
    asked: list[str] = []
    township.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    township.get_by_role("button", name="退回", exact=True).click()
    expect(township.get_by_role("alert")).to_contain_text("不通过或退回时必须填写意见")
    assert asked and "将退回至「农户申请」" in asked[0]  # 退回 asks first and says where the case goes
    expect(township.locator(".field", has=township.locator("#opinion"))).to_have_class(has_class("has-error"))
    expect(township).to_have_url(task_url)
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["township_audit"]  # refused: nothing changed

    reason = "户主身份证复印件不清晰,请村里重新采集申请材料"
    township.get_by_label("审批意见").fill(reason)
    township.get_by_label("退回到").select_option(label="农户申请")
    township.get_by_role("button", name="退回", exact=True).click()
    expect_flash(township, case_id, "已退回至「农户申请」")
    expect(township.get_by_test_id("current-steps")).to_have_text("农户申请")

    # the diagram marks the step that returned the case, the reopened step is current; the legend says so
    diagram = township.locator("#diagram")
    expect(diagram).to_have_attribute("data-rendered", "true")
    expect(diagram.locator('[data-element-id="township_audit"]')).to_have_class(has_class("xf-returned"))
    expect(diagram.locator('[data-element-id="application"]')).to_have_class(has_class("xf-current"))
    expect(diagram.locator('[data-element-id="village_review"]')).not_to_have_class(has_class("xf-returned"))
    expect(township.locator(".legend")).to_contain_text("曾在此退回")
    last = township.get_by_test_id("history").locator("li").last
    expect(last.locator("strong")).to_have_text("退回")
    expect(last).to_contain_text("· 镇(街道)审核")
    expect(last).to_contain_text(display_name(db, "demo_township"))
    expect(last).to_contain_text(f"意见:{reason}")

    # the village finds the reopened 农户申请 in 待办, with the reason and its earlier data
    village = user_page("demo_village")
    row = todo_row(village, "农户申请")
    expect(row).to_have_count(1)
    row.get_by_role("link", name="农户申请").click()
    note = village.get_by_test_id("return-reason")
    expect(note).to_contain_text("「镇(街道)审核」")
    expect(note).to_contain_text(display_name(db, "demo_township"))
    expect(note).to_contain_text(f"退回原因:{reason}")
    expect(village.locator("#f_phone")).to_have_value("13800001111")
    expect(village.locator("#f_head_name")).to_have_value("张德明")


# ----------------------------------------------------------------------------- 撤回
def test_the_last_approver_withdraws_while_the_next_step_is_untouched_but_not_once_it_has_acted(
        db, housing_case, approve_housing_step, user_page):
    case_id = housing_case("county_approval")  # demo_township approved 镇(街道)审核 last
    township = user_page("demo_township")
    expect(todo_row(township, "镇(街道)审核")).to_have_count(0)
    open_case(township, case_id)
    township.get_by_label("撤回原因").fill("鉴定报告编号填错")
    township.get_by_role("button", name="撤回我上一步的办理").click()
    expect_flash(township, case_id, "已撤回")
    expect(township.get_by_test_id("current-steps")).to_have_text("镇(街道)审核")
    last = township.get_by_test_id("history").locator("li").last
    expect(last.locator("strong")).to_have_text("撤回")
    expect(last).to_contain_text("意见:鉴定报告编号填错")
    expect(township.get_by_test_id("withdraw")).to_have_count(0)  # nothing of mine to withdraw now
    expect(todo_row(township, "镇(街道)审核")).to_have_count(1)  # the task came back
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["township_audit"]

    # approved again; the page offers 撤回, the county acts meanwhile: the click is refused, visibly
    approve_housing_step(case_id, "township_audit")
    open_case(township, case_id)
    expect(township.get_by_test_id("withdraw")).to_be_visible()
    approve_housing_step(case_id, "county_approval")
    township.get_by_label("撤回原因").fill("补充鉴定照片")
    township.get_by_role("button", name="撤回我上一步的办理").click()
    expect(township).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(township.get_by_role("status")).to_contain_text("无法撤回:下一步已办理")
    expect(township.get_by_test_id("current-steps")).to_have_text("开工")
    expect(township.get_by_test_id("withdraw")).to_have_count(0)  # and no longer offered
    with db.uow() as work:
        assert work.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "withdraw")) == 1


# ----------------------------------------------------------------------------- 转办
def test_a_task_transferred_to_a_colleague_of_the_same_role_and_township_leaves_the_holders_todo(
        db, housing_case, user_page):
    colleague = add_township_colleague(db)
    case_id = housing_case("township_audit")
    township = user_page("demo_township")
    open_case(township, case_id)
    picker = township.get_by_label("转办给")  # a picker of who may take it: same post, same township
    offered = picker.locator("option").evaluate_all("options => options.map(o => o.value).filter(Boolean)")
    assert offered == ["township_two"], offered  # 赤城镇's officer (another jurisdiction) is not offered
    expect(picker.locator("option[value=township_two]")).to_contain_text(colleague)

    picker.select_option("township_two")
    township.get_by_label("转办说明").fill("本人外出,请代为审核")
    township.get_by_role("button", name="转办", exact=True).click()
    expect_flash(township, case_id, "已转办")
    expect(township.get_by_role("link", name="办理:镇(街道)审核")).to_have_count(0)
    expect(township.get_by_text(f"镇(街道)审核(已由 {colleague} 认领)")).to_be_visible()
    last = township.get_by_test_id("history").locator("li").last
    expect(last.locator("strong")).to_have_text("转办")
    expect(last).to_contain_text("意见:本人外出,请代为审核")
    expect(todo_row(township, "镇(街道)审核")).to_have_count(0)

    two = user_page("township_two")
    row = todo_row(two, "镇(街道)审核")
    expect(row).to_have_count(1)
    row.get_by_role("link", name="镇(街道)审核").click()
    expect(two.get_by_role("button", name="通过", exact=True)).to_be_visible()


# ----------------------------------------------------------------------------- 认领 / 取消认领
def test_a_claimed_group_task_leaves_the_colleagues_todo_until_it_is_unclaimed(db, housing_case, user_page):
    colleague = add_township_colleague(db)
    case_id = housing_case("township_audit")
    township, two = user_page("demo_township"), user_page("township_two")
    expect(todo_row(two, "镇(街道)审核")).to_have_count(1)  # a group task: both see it

    open_case(township, case_id)
    township.get_by_role("button", name="认领", exact=True).click()
    expect_flash(township, case_id, "已认领")
    expect(township.get_by_role("button", name="取消认领")).to_be_visible()

    expect(todo_row(two, "镇(街道)审核")).to_have_count(0)
    open_case(two, case_id)
    expect(two.get_by_text(f"镇(街道)审核(已由 {display_name(db, 'demo_township')} 认领)")).to_be_visible()
    expect(two.get_by_role("link", name="办理:镇(街道)审核")).to_have_count(0)
    expect(two.get_by_role("button", name="认领", exact=True)).to_have_count(0)
    (row,) = db.open_tasks(case_id)
    two.goto(f"/tasks/{row.id}")  # the task page is read-only for the colleague
    expect(two.get_by_role("heading", level=1)).to_contain_text("镇(街道)审核")
    expect(two.get_by_role("button", name="通过", exact=True)).to_have_count(0)

    township.get_by_role("button", name="取消认领").click()
    expect_flash(township, case_id, "已退回待认领")
    expect(township.get_by_role("button", name="认领", exact=True)).to_be_visible()

    open_case(two, case_id)
    two.get_by_role("button", name="认领", exact=True).click()
    expect_flash(two, case_id, "已认领")
    expect(two.get_by_role("link", name="办理:镇(街道)审核")).to_be_visible()
    expect(todo_row(two, "镇(街道)审核")).to_have_count(1)
    expect(todo_row(township, "镇(街道)审核")).to_have_count(0)
    open_case(township, case_id)
    expect(township.get_by_text(f"镇(街道)审核(已由 {colleague} 认领)")).to_be_visible()
    actions = [e.action for e in _history(db, case_id)]
    assert actions[-3:] == ["claim", "unclaim", "claim"]


# ----------------------------------------------------------------------------- 抄送
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_a_cc_reaches_only_the_cases_jurisdiction_and_shows_the_case_under_cc(db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    village = user_page("demo_village")
    open_case(village, case_id)
    picker = village.get_by_test_id("picker-to")  # only people whose jurisdiction contains the case
    picker.locator("summary").click()
    expect(picker.locator("input[value=demo_other_township]")).to_have_count(0)  # 赤城镇: not offered
    expect(picker.locator("input[value=demo_township]")).to_have_count(1)
    assert count(db, CaseCc) == 0
    outsider = user_page("demo_other_township")
    response = outsider.goto(f"/cases/{case_id}")
    assert response is not None and response.status == 404

    picker.get_by_placeholder("按姓名、岗位或地区筛选").fill("办公室")  # the filter narrows the list
    expect(picker.locator("label[data-people-item]:visible")).to_have_count(1)
    picker.get_by_label(re.compile("宝梵镇办公室")).check()  # 宝梵镇办公室: inside
    village.get_by_label("抄送说明").fill("请参阅本户改造情况")
    village.get_by_role("button", name="抄送", exact=True).click()
    expect_flash(village, case_id, "已抄送")

    other = user_page("demo_clerk")
    expect(other.get_by_test_id("tab-cc").locator(".badge")).to_have_text("1")
    other.get_by_test_id("tab-cc").click()
    expect(other.get_by_test_id("tab-cc")).to_have_class(ACTIVE)
    other.get_by_role("link", name=CASE_TITLE).click()
    expect(other).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(other.get_by_test_id("current-steps")).to_have_text("镇(街道)审核")
    expect(other.locator("dl.kv dd", has_text="13800001111")).to_be_visible()  # the form data
    # a reader: no task of theirs to act on, no case upload (only the starter), no 撤回
    expect(other.get_by_test_id("task-upload-hint")).to_have_count(0)
    expect(other.get_by_test_id("case-upload-form")).to_have_count(0)
    expect(other.get_by_test_id("withdraw")).to_have_count(0)
    (row,) = db.open_tasks(case_id)
    response = other.goto(f"/tasks/{row.id}")
    assert response is not None and response.status == 404


# ----------------------------------------------------------------------------- 催办
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_the_starter_urges_the_holder_once_an_hour(db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    township = user_page("demo_township")
    unread = township.get_by_test_id("unread-count")
    before = int(unread.inner_text()) if unread.count() else 0

    village = user_page("demo_village")
    open_case(village, case_id)
    (row,) = db.open_tasks(case_id)
    urge = village.get_by_test_id(f"urge-{row.id}")
    expect(urge).to_contain_text("镇(街道)审核")
    urge.get_by_role("button", name="催办").click()
    expect_flash(village, case_id, "已催办")
    township.reload()
    expect(unread).to_have_text(str(before + 1))
    township.get_by_test_id("notifications-link").click()
    expect(township.get_by_test_id("notification").first).to_contain_text("催办:镇(街道)审核")

    village.get_by_test_id(f"urge-{row.id}").get_by_role("button", name="催办").click()
    expect_flash(village, case_id, "未成功:一小时内已催办过,请稍后再试")
    township.goto("/")
    expect(unread).to_have_text(str(before + 1))


# ----------------------------------------------------------------------------- attachments
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_an_attachment_reaches_a_later_approver_intact_and_a_bad_one_is_refused_and_not_stored(
        db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    png = tiny_png()
    village = user_page("demo_village")
    open_case(village, case_id)
    village.get_by_label("附件").set_input_files(files=[{"name": "房屋照片.png", "mimeType": "image/png", "buffer": png}])
    village.get_by_role("button", name="上传附件").click()
    expect_flash(village, case_id, "附件已上传")
    expect(village.get_by_test_id("attachment")).to_have_count(1)

    township = user_page("demo_township")
    open_case(township, case_id)
    listed = township.get_by_test_id("attachment")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text(display_name(db, "demo_village"))
    with township.expect_download() as download:
        listed.get_by_role("link", name="房屋照片.png").click()
    assert download.value.suggested_filename == "房屋照片.png"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == png

    files_before = _stored_files(db)
    too_large = b"%PDF-1.7\n" + b"0" * (10 * 1024 * 1024)
    exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64  # a Windows program
    for name, content, message in [("评议记录.pdf", too_large, "未成功:文件不能超过 10 MB"),
                                    ("证明.pdf", exe, "未成功:只接受 JPG、PNG、PDF、DOCX、XLSX 文件")]:
        village.get_by_label("附件").set_input_files(
            files=[{"name": name, "mimeType": "application/pdf", "buffer": content}])
        village.get_by_role("button", name="上传附件").click()
        expect_flash(village, case_id, message)
        expect(village.get_by_test_id("attachment")).to_have_count(1)
    assert count(db, Attachment) == 1
    assert _stored_files(db) == files_before


def _stored_files(db) -> list[str]:
    return sorted(str(p) for p in db.storage_dir.rglob("*") if p.is_file())


def _history(db, case_id: int) -> list[AuditEvent]:
    with db.uow() as work:
        return list(work.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)))
