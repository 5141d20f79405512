"""Each notice kind renders Chinese text with embedded subset fonts, no .notdef glyphs, GB/T 9704 layout,
masked ID numbers on public notices, the seal over the issuer's name and date, and a record in the case history."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pdfplumber
import pytest
from notices_support import (
    MM,
    PHONES,
    case_at,
    ensure_office_keys,
    fonts,
    issue,
    notdef_glyphs,
    signature_page,
    stored,
    text_lines,
    today,
)
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.models import AuditEvent, IssuedNotice, TaskRow
from engine.notices.formatting import cn_date
from engine.notices.render import RENDERER
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.notice_catalog import load_catalog, version_catalog
from tests.integration.dates_support import dated

A4 = (595.28, 841.89)
LEFT, TOP, WIDTH, HEIGHT = 28 * MM, 37 * MM, 156 * MM, 225 * MM


def _issue_one_of_each(db):
    """One notice of each kind, with Chinese names: {kind: (serial, pdf, case ids)}."""
    ensure_office_keys(db)
    # later stages first: passing a period moves the clock; the 退出告知书 is issued at 退出告知, which then
    # completes (the case exits) before its 审批表
    exited = case_at(db, db.household("刘桂芳"), "exit_notice")
    county = [case_at(db, db.household("王建国"), "county_notice")]
    village = [case_at(db, db.household(name), "village_notice") for name in ("张德明", "李秀英")]
    exit_notice = (*issue(db, "demo_village", "exit_notice", [exited], {"contact_phone": "0825-5421234"}), [exited])
    db.complete(exited, "demo_village", opinion="已送达告知书。", data=dated(db, D.EXIT_NOTICE))
    return {
        "village_public_notice": (*issue(db, "demo_clerk", "village_public_notice", village, PHONES), village),
        "county_announcement": (*issue(db, "demo_county", "county_announcement", county,
                                       {"contact_phone": "0825-5400000", "document_number": "蓬乡振〔2026〕12号"}),
                                county),
        "exit_notice": exit_notice,
        "approval_form": (*issue(db, "demo_clerk", "approval_form", [exited]), [exited]),
    }


@pytest.fixture(scope="session")
def issued_state(snapshot_db):
    """The database once the four notices are issued (cases walked, PDFs rendered and signed: seconds), built
    once; tests that read the database start from a copy of it (``db_snapshot``), the others only read the PDFs."""
    return snapshot_db(_issue_one_of_each)


@pytest.fixture
def issued(issued_state):
    return issued_state.value


def _text(pdf: bytes) -> str:
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        return "".join((page.extract_text() or "").replace("\n", "") for page in doc.pages)


EXPECTED_TEXT = {
    "village_public_notice": ["关于冬笋街社区防止返贫监测对象风险消除拟退出的公示", "张德明", "李秀英",
                              "公示时间：{today}至{week_later}（共7天）", "监督电话：0825-5420000", "冬笋街社区居民委员会"],
    "county_announcement": ["蓬溪县关于防止返贫监测对象风险消除的公告", "蓬乡振〔2026〕12号", "王建国", "宝梵镇",
                            "特此公告", "蓬溪县乡村振兴局"],
    "exit_notice": ["防止返贫监测对象风险消除退出告知书", "刘桂芳户", "起退出防止返贫监测", "特此告知", "宝梵镇人民政府"],
    "approval_form": ["防止返贫监测对象风险消除退出审批表", "刘桂芳", "入户核查", "民主评议", "镇复核",
                      "部门审定", "县级公告", "退出告知", "情况属实,同意。", "宝梵镇乡村振兴办(演示)"],
}


@pytest.mark.db_snapshot("issued_state")
def test_each_notice_kind_renders_chinese_text_with_embedded_subset_fonts_and_no_notdef_glyphs(db, issued):
    now = db.clock.now().astimezone(CHINA_TZ).date()
    dates = {"today": cn_date(now), "week_later": cn_date(now + timedelta(days=6))}
    assert re.fullmatch(r"\d{4}年[1-9]\d?月[1-9]\d?日", dates["today"])  # Arabic numerals, no leading zeros
    for kind, (serial, pdf, _cases) in issued.items():
        text = _text(pdf)
        assert "(cid:" not in text and "\ufffd" not in text, kind
        for expected in EXPECTED_TEXT[kind]:
            assert expected.format(**dates) in text, (kind, expected)
        assert f"编号：{serial}" in text, kind
        assert dates["today"] in text, kind

        used = fonts(pdf)
        assert used, kind
        for font in used:
            assert font["embedded"], (kind, font)
            assert re.fullmatch(r"/[A-Z]{6}\+.+", font["base_font"]), ("subset tag", kind, font)
            assert font["subtype"] == "/Type0", (kind, font)
        assert any("Noto-Serif-CJK-SC" in f["base_font"] or "FangSong" in f["base_font"] for f in used), used
        assert notdef_glyphs(pdf) == 0, kind

        with pdfplumber.open(io.BytesIO(pdf)) as doc:
            for page in doc.pages:
                assert (round(page.width, 2), round(page.height, 2)) == A4, kind


def test_a_glyph_no_installed_font_has_is_caught_as_notdef(db):
    """The .notdef check itself works: a supplementary private-use character has no glyph anywhere."""
    with db.uow() as work:
        catalog = load_catalog(work.definitions, "monitoring_exit")
    html = '<html lang="zh-CN"><body><p>缺字测试\U000F0001</p></body></html>'
    rendered = RENDERER.render(html, catalog)
    assert notdef_glyphs(rendered.pdf) >= 1


def test_the_exit_notice_follows_gbt_9704_margins_fonts_grid_date_and_page_number(issued):
    _serial, pdf, _cases = issued["exit_notice"]
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        page = doc.pages[0]
        body = [c for line in text_lines(page, 16) for c in line]
        assert min(c["x0"] for c in body) >= LEFT - 0.5
        assert max(c["x1"] for c in body) <= LEFT + WIDTH + 0.5
        assert min(c["top"] for c in body) >= TOP - 0.5
        assert max(c["bottom"] for c in body) <= TOP + HEIGHT + 0.5

        (title,) = text_lines(page, 22)
        assert "".join(c["text"] for c in title) == "防止返贫监测对象风险消除退出告知书"
        assert all("Bold" in c["fontname"] for c in title)
        assert title[0]["top"] >= TOP - 0.5
        centre = (title[0]["x0"] + title[-1]["x1"]) / 2
        assert abs(centre - (LEFT + WIDTH / 2)) < 2

        lines = text_lines(page, 16)
        wide = [line for line in lines if all(abs(c["x1"] - c["x0"] - 16) < 0.5 for c in line)]
        full = [line for line in wide if len(line) == 28]
        assert full, "a full body line holds 28 characters"
        assert max(len(line) for line in wide) == 28
        for line in full:
            steps = [b["x0"] - a["x0"] for a, b in zip(line, line[1:], strict=False)]
            assert all(abs(s - WIDTH / 28) < 0.05 for s in steps), steps
            assert abs(line[-1]["x1"] - line[0]["x0"] - WIDTH) < 1.0
        pitches = [round(b[0]["top"] - a[0]["top"], 2) for a, b in zip(lines, lines[1:], strict=False)]
        line_pitch = HEIGHT / 22
        assert sum(1 for p in pitches if abs(p - line_pitch) < 0.1) >= 8, pitches

        number = [c for c in page.chars if abs(c["size"] - 14) < 0.3 and c["top"] > TOP + HEIGHT]
        assert "".join(c["text"] for c in number).replace(" ", "") == "—1—"
        assert TOP + HEIGHT + 5 * MM <= min(c["top"] for c in number) <= TOP + HEIGHT + 9 * MM
        assert abs(max(c["x1"] for c in number) - (LEFT + WIDTH - 14)) < 3  # odd page: right, one character in

        header = [c for c in page.chars if c["bottom"] < TOP]
        assert "".join(c["text"] for c in header).startswith("编号：XF2026-")


def test_public_notices_mask_id_numbers_and_the_approval_form_shows_every_level(issued):
    village = _text(issued["village_public_notice"][1])
    assert "510921********0011" in village and "510921196503120011" not in village
    county = _text(issued["county_announcement"][1])
    assert "510921********0030" in county and "510921195811050030" not in county

    form = _text(issued["approval_form"][1])
    assert "510921198001150041" in form  # internal form: full number
    for who in ("宝梵镇村干部(演示)", "宝梵镇乡村振兴办(演示)", "蓬溪县乡村振兴局(演示)", "蓬溪县领导小组(演示)"):
        assert f"经办人：{who}" in form, who
    assert form.count("经办人：") == 6  # 入户核查, 民主评议, 镇复核, 部门审定, 县级公告, 退出告知
    assert "日期：2026年9月1日" in form and "日期：2026年9月8日" in form  # before and after the 村级公示 week


def _seal_and_issuer(pdf: bytes, issuer: str, date_text: str):
    index, (x1, y1, x2, y2) = signature_page(pdf)
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        page = doc.pages[index]
        height = float(page.height)
        seal = (x1, height - y2, x2, height - y1)  # to pdfplumber's top-down coordinates
        lines = text_lines(page, 16)
        name = next(line for line in lines if "".join(c["text"] for c in line) == issuer)
        date = next(line for line in lines if "".join(c["text"] for c in line) == date_text)
        images = [(img["x0"], img["top"], img["x1"], img["bottom"]) for img in page.images]
        others = [line for line in lines if line is not name and line is not date]
        tables = [c for c in page.chars if abs(c["size"] - 14) < 0.3 and c["top"] < TOP + HEIGHT]
        return index, len(doc.pages), seal, name, date, images, others, tables


@pytest.mark.db_snapshot("issued_state")
def test_the_seal_sits_over_the_issuer_name_and_date_with_the_signature_widget_on_it(db, issued):
    index, _pages, seal, name, date, images, others, _tables = _seal_and_issuer(
        issued["exit_notice"][1], "冬笋街社区居民委员会", today(db))  # the village committee issues the 告知书
    assert index == 0
    assert any(all(abs(a - b) < 1.5 for a, b in zip(img, seal, strict=True)) for img in images), (images, seal)
    assert abs((seal[2] - seal[0]) - 42 * MM) < 1 and abs((seal[3] - seal[1]) - 42 * MM) < 1
    seal_cx, seal_cy = (seal[0] + seal[2]) / 2, (seal[1] + seal[3]) / 2
    for line in (name, date):
        cx = (line[0]["x0"] + line[-1]["x1"]) / 2
        cy = (line[0]["top"] + line[0]["bottom"]) / 2
        assert seal[0] < cx < seal[2] and seal[1] < cy < seal[3]
        assert abs(cx - seal_cx) < 3  # 居中
        assert cy > seal_cy - 2  # 署名和日期居印章中心偏下
    # 成文日期右空四字; 署名以成文日期为准居中
    assert abs(date[-1]["x1"] - (LEFT + WIDTH - 4 * WIDTH / 28)) < 2
    assert abs((name[0]["x0"] + name[-1]["x1"]) / 2 - (date[0]["x0"] + date[-1]["x1"]) / 2) < 2
    assert others, "the seal's page carries body text"


def test_a_long_village_list_runs_over_pages_and_the_seal_stays_with_text_on_the_last(db):
    from notices_support import VILLAGE, add_household

    ensure_office_keys(db)
    ids = [case_at(db, add_household(db, f"测试户{i:02d}号", VILLAGE, i), "village_notice") for i in range(36)]
    serial, pdf = issue(db, "demo_village", "village_public_notice", ids, PHONES)
    index, pages, _seal, _name, _date, _images, _others, tables = _seal_and_issuer(pdf, "冬笋街社区居民委员会",
                                                                                   today(db))
    assert pages >= 2 and index == pages - 1
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        last = doc.pages[-1]
        body_16 = [line for line in text_lines(last, 16)
                   if "".join(c["text"] for c in line) not in ("冬笋街社区居民委员会", today(db))]
        assert body_16 or tables, "text on the seal's page besides the signature"
        second = doc.pages[1]
        number = [c for c in second.chars if abs(c["size"] - 14) < 0.3 and c["top"] > TOP + HEIGHT]
        assert "".join(c["text"] for c in number).replace(" ", "") == "—2—"
        assert abs(min(c["x0"] for c in number) - (LEFT + 14)) < 3  # even page: left, one character in
        assert "户主姓名" in (second.extract_text() or ""), "the table header repeats on the next page"
    assert stored(db, serial).page_count == pages


@pytest.mark.db_snapshot("issued_state")
def test_issuing_records_notice_issued_in_each_case_history_and_the_stored_rows_are_immutable(db, issued):
    serial, pdf, cases = issued["village_public_notice"]
    with db.uow() as work:
        events = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "notice_issued",
                                                               AuditEvent.case_id.in_(cases))).all()
        assert sorted(e.case_id for e in events) == sorted(cases)
        # issuing completed each case's 出具村级公示 step: the event names it and the period the notice prints
        assert all(e.data_diff["serial"] == serial and e.step == "出具村级公示" for e in events)
        steps = [work.session.get(TaskRow, e.task_id) for e in events]
        assert all((t.spec_name, t.action, t.data) == ("issue_village_notice", "issue", {"notice_serial": serial})
                   for t in steps)
        start = db.clock.now().astimezone(CHINA_TZ).date()
        assert all(e.data_diff["period"] == [start.isoformat(), (start + timedelta(days=6)).isoformat()]
                   for e in events)
        assert all(e.user.username == "demo_clerk" for e in events)
    notice = stored(db, serial)
    import hashlib

    assert notice.sha256 == hashlib.sha256(pdf).hexdigest() and notice.size_bytes == len(pdf)
    for statement in ("UPDATE issued_notice SET title = 'x' WHERE serial = :s",
                      "DELETE FROM issued_notice WHERE serial = :s",
                      "UPDATE issued_notice_case SET case_id = case_id "
                      "WHERE notice_id = (SELECT id FROM issued_notice WHERE serial = :s)",
                      "DELETE FROM issued_notice_case WHERE notice_id = (SELECT id FROM issued_notice WHERE serial = :s)"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement), {"s": serial})
    with db.uow() as work:
        assert work.session.scalar(select(IssuedNotice.title).where(IssuedNotice.serial == serial)).startswith("关于")


def test_the_shared_layout_is_found_after_a_versions_own_files(db, tmp_path, monkeypatch):
    """_base.html and gbt9704.css live once in workflows/_notice_layout/; a version's own file of the name wins."""
    import shutil

    from engine.core import settings
    from engine.procedures.definitions import bundle_from_files

    shutil.copytree(settings.WORKFLOWS_DIR / "_notice_layout", tmp_path / "_notice_layout")
    monkeypatch.setattr(settings, "WORKFLOWS_DIR", tmp_path)
    shared_css = (tmp_path / "_notice_layout" / "gbt9704.css").read_text(encoding="utf-8")
    with db.uow() as work:
        shipped = work.definitions.latest("project_library")
        shared = version_catalog(shipped)
        assert "gbt9704.css" not in shared.files and shared.file("gbt9704.css") == shared_css
        files = {**work.definitions.files(shipped), "template/gbt9704.css": "@page { size: A4; }"}  # an override
        own = work.definitions.deploy(bundle_from_files(files), "test", set(work.directory.role_levels()))
        assert own.version == shipped.version + 1
        catalog = load_catalog(work.definitions, "project_library")  # the current version's
        assert catalog.file("gbt9704.css") == "@page { size: A4; }"
        assert catalog.content_sha256 != shared.content_sha256
        (tmp_path / "_notice_layout" / "gbt9704.css").unlink()
        assert version_catalog(own).file("gbt9704.css") == "@page { size: A4; }"
        with pytest.raises(ValidationError) as info:  # neither has it: the catalog names the missing sheet
            version_catalog(shipped)
        assert info.value.errors == {"gbt9704.css": "样式表不存在"}
