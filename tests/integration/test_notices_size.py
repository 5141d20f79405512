"""Notices set in the notice fonts (engine/notices/fonts.py): a one-page notice stays under 120 KB and reads
back as Chinese; a character outside the notice fonts' set still renders, from the installed font; a batch
runs over two processes on PostgreSQL (one on SQLite) and issues every group's notice exactly once."""

from __future__ import annotations

import pytest
from notices_support import (
    PHONES,
    VILLAGE,
    VILLAGE_2,
    VILLAGE_3,
    add_household,
    case_at,
    ensure_office_keys,
    fonts,
    issue,
    multi_village_cadre,
    notdef_glyphs,
)
from sqlalchemy import func, select
from test_notices_render import _text

from engine.models import IssuedNotice, NoticeBatchStatus
from engine.notices import batches
from engine.notices import fonts as notice_fonts
from engine.notices import service as service_module
from engine.notices.pki import KeyStore
from engine.notices.render import NoticeRenderer
from engine.notices.verify import validate_signature

MAX_ONE_PAGE_BYTES = 120 * 1024


@pytest.fixture
def notice_renderer(monkeypatch):
    """A renderer that sees the notice fonts (built here once per checkout when ``make setup`` has not)."""
    notice_fonts.build()
    assert len(notice_fonts.installed()) == len(notice_fonts.FONTS)
    renderer = NoticeRenderer()
    monkeypatch.setattr(service_module, "RENDERER", renderer)  # what the unit of work's NoticeService uses
    return renderer


def _trust_roots(db):
    with db.uow() as work:
        return KeyStore(work.session, db.clock).trust_roots()


def test_one_page_notices_in_the_notice_fonts_stay_under_120_kb_with_chinese_text_and_a_valid_signature(
        db, notice_renderer):
    ensure_office_keys(db)
    exited = case_at(db, db.household("刘桂芳"), "exit_notice")  # where the 退出告知书 is issued
    village = [case_at(db, db.household("张德明"), "village_notice")]
    issued = {
        "village_public_notice": (issue(db, "demo_clerk", "village_public_notice", village, PHONES), "张德明"),
        "exit_notice": (issue(db, "demo_village", "exit_notice", [exited], {"contact_phone": "0825-5421234"}),
                        "刘桂芳户"),
    }
    roots = _trust_roots(db)
    for kind, ((serial, pdf), name) in issued.items():
        with db.uow() as work:
            notice = work.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == serial))
            assert notice.page_count == 1, kind
        assert len(pdf) <= MAX_ONE_PAGE_BYTES, (kind, len(pdf))
        used = fonts(pdf)
        assert used and all("Notice" in f["base_font"] and "Noto-" in f["base_font"] for f in used), used
        assert all(f["embedded"] for f in used), used
        text = _text(pdf)
        assert name in text and f"编号：{serial}" in text, kind
        assert notdef_glyphs(pdf) == 0, kind
        assert validate_signature(pdf, roots).ok, kind


def test_a_name_outside_gb2312_renders_from_the_installed_font(db, notice_renderer):
    name = "王堃"
    with pytest.raises(UnicodeEncodeError):
        name.encode("gb2312")  # 堃 is not among the characters the notice fonts hold
    ensure_office_keys(db)
    case_id = case_at(db, add_household(db, name, VILLAGE, 41), "village_notice")
    _serial, pdf = issue(db, "demo_clerk", "village_public_notice", [case_id], PHONES)
    assert name in _text(pdf)
    assert notdef_glyphs(pdf) == 0
    used = [f["base_font"] for f in fonts(pdf)]
    assert any("Notice" in f for f in used) and any("Notice" not in f for f in used), used


def test_a_batch_runs_over_two_processes_on_postgresql_and_issues_each_group_once(db, notice_renderer, monkeypatch):
    ensure_office_keys(db)
    cadre = multi_village_cadre(db)
    case_ids = [case_at(db, add_household(db, f"{'周吴郑'[n]}一民", village, 50 + n), "village_notice", starter=cadre)
                for n, village in enumerate((VILLAGE, VILLAGE_2, VILLAGE_3))]
    clerk = db.actor("demo_clerk")
    with db.uow() as work:
        batch_id = work.notices.create_batch(clerk, "monitoring_exit", "village_public_notice", case_ids, PHONES).id
    monkeypatch.setattr(batches, "MIN_GROUPS_PER_WORKER", 1)  # three groups are enough to use two processes here
    parallel = batches._shared_url(db.factory) is not None
    assert parallel == (db.engine.dialect.name == "postgresql")
    seen = []
    assert batches.run_batch(db.factory, db.clock, batch_id, progress=lambda done, total: seen.append(done),
                             workers=2) == NoticeBatchStatus.done
    assert seen == [0, 1, 2, 3]
    roots = _trust_roots(db)
    with db.uow() as work:
        notices = work.session.scalars(select(IssuedNotice).where(IssuedNotice.batch_id == batch_id)).all()
        assert sorted(n.group_key for n in notices) == sorted(f"village:{v}" for v in (VILLAGE, VILLAGE_2, VILLAGE_3))
        assert all(validate_signature(n.pdf, roots).ok and n.size_bytes <= MAX_ONE_PAGE_BYTES for n in notices)
        assert work.session.scalar(select(func.count(IssuedNotice.id)).where(IssuedNotice.batch_id == batch_id)) == 3
