"""The read-only sessions every request uses outside its view (the logged-in user, the unread count): SELECTs in
autocommit, anything else refused before it is sent, and the pooled connection back in transactions after."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, insert, select, text

from engine.core.db import ReadOnlyError, make_engine, make_read_session_factory, make_session_factory
from engine.models import Notification, User


def test_a_read_session_selects_and_refuses_a_write_before_sending_it(db):
    engine = make_engine(db.url)
    try:
        reader = make_read_session_factory(engine)
        with reader() as session:
            assert session.scalar(select(func.count(User.id))) > 0
            before = session.scalar(select(func.count(Notification.id)))
            with pytest.raises(ReadOnlyError):
                session.execute(insert(Notification).values(user_id=1, kind="task", title="x", body="y"))
            with pytest.raises(ReadOnlyError):
                session.execute(text("DELETE FROM notification"))
        with make_session_factory(engine)() as session:
            assert session.scalar(select(func.count(Notification.id))) == before
    finally:
        engine.dispose()


def test_after_a_read_the_same_pooled_connection_rolls_back_a_failed_unit_again(db):
    engine = make_engine(db.url)
    try:
        reader, writer = make_read_session_factory(engine), make_session_factory(engine)
        with reader() as session:
            first = session.connection().connection.dbapi_connection
            session.scalar(select(func.count(User.id)))
        with writer() as session:
            assert session.connection().connection.dbapi_connection is first  # the pool handed it back
            session.execute(text("UPDATE user_account SET display_name = 'x' WHERE username = 'demo_village'"))
            session.rollback()
        with writer() as session:
            assert session.scalar(select(User.display_name).where(User.username == "demo_village")) != "x"
    finally:
        engine.dispose()


def test_a_logged_in_page_loads_its_user_and_unread_count_through_read_sessions(db, client_for):
    client = client_for("demo_village")
    reads: list[str] = []
    state = client.application.extensions["xiangflow"]
    reader_engine = state.reader.kw["bind"]

    def seen(_conn, _cursor, statement, *_args):
        reads.append(statement)

    event.listen(reader_engine, "before_cursor_execute", seen)
    try:
        assert client.get("/").status_code == 200
    finally:
        event.remove(reader_engine, "before_cursor_execute", seen)
    assert state.engine is not reader_engine
    assert any("FROM user_account" in s for s in reads) and any("FROM notification" in s for s in reads)
