"""Two-character name search (issue 16): the bigram GIN index serves it on PostgreSQL, results equal LIKE's."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import insert, select, text

from engine.models import Subject
from engine.queries.inbox import InboxSearch
from engine.queries.names import name_contains
from engine.registry.service import SubjectSearch

VILLAGE = "510921107001"  # demo_village's
NAMES = ["张德明", "德明", "王德明远", "王王", "王王王", "明德", "李%明", "李_明", "100%", "a_b", "阿", "欧阳修远",
         "欧阳德"]
TERMS = ["德明", "王王", "明德", "%明", "_明", "0%", "a_", "阿", "德", "欧阳修", "修远", "远", "无此"]


def add_subjects(db, names: list[str]) -> None:
    with db.uow() as work:
        work.session.execute(insert(Subject), [
            {"kind": "household", "region_code": VILLAGE, "name": n, "id_number": None, "attrs": {},
             "is_active": True, "revision": 1} for n in names])


def test_name_contains_finds_exactly_what_like_finds_for_every_term_length(db):
    add_subjects(db, NAMES)
    with db.uow() as work:
        dialect = work.session.get_bind().dialect.name
        every = list(work.session.execute(select(Subject.id, Subject.name)))
        for term in TERMS:
            found = set(work.session.scalars(select(Subject.id).where(name_contains(Subject, term, dialect))))
            assert found == {i for i, name in every if term in name}, term
            assert found == set(work.session.scalars(select(Subject.id).where(
                Subject.name.contains(term, autoescape=True)))), term


def test_the_registry_list_and_the_inbox_search_use_it(db):
    add_subjects(db, NAMES)
    actor = db.actor("demo_village")
    with db.uow() as work:
        page = work.registry.search(actor, SubjectSearch(kind="household", name="德明", per_page=200))
        assert sorted(s.name for s in page.items) == ["张德明", "张德明", "德明", "王德明远"] and page.total == 4  # one is the demo's
    case_id = db.start_case(subject_id=db.household("张德明"))
    with db.uow() as work:
        found = work.inbox.parse_search({"name": "德明"}, actor)
        assert [c.id for c in work.inbox.page("started", actor, found).items] == [case_id]
        assert work.inbox.page("started", actor, InboxSearch(name="王王")).items == []


def test_on_postgresql_a_two_character_term_reads_the_bigram_index(db):
    with db.uow() as work:
        if work.session.get_bind().dialect.name != "postgresql":
            pytest.skip("the bigram GIN index is PostgreSQL's (SQLite keeps LIKE)")
    rng = random.Random(16)
    pool = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
    add_subjects(db, ["".join(rng.choice(pool) for _ in range(rng.choice((2, 3, 3, 4)))) for _ in range(20_000)]
                 + ["欧阳修远", "修远", "李修远"])
    with db.uow() as work:
        work.session.execute(text("ANALYZE subject"))
        stmt = select(Subject.id).where(name_contains(Subject, "修远", "postgresql"))
        compiled = stmt.compile(work.session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(work.session.scalars(text(f"EXPLAIN {compiled}")))
        assert "ix_subject_name_bigrams" in plan, plan
        assert len(work.session.scalars(stmt).all()) == 3
