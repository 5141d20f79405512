"""web.heap.settle: a serving process's built heap is frozen, so the cycle collector's full passes skip it."""

from __future__ import annotations

import gc

import pytest

from web import create_app
from web.heap import settle

# settle()'s full collection finalizes what earlier tests in this worker left unreachable (an unclosed psycopg
# connection warns in its __del__): their warnings are not this module's
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning",
                                        "ignore::ResourceWarning")


@pytest.fixture
def built_app(tmp_path):
    app = create_app({"XIANGFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'heap.sqlite3'}",
                      "XIANGFLOW_SCHEDULER": False, "SECRET_KEY": "heap-test"})
    yield app
    gc.unfreeze()  # give this test process's objects back to the collector
    app.extensions["xiangflow"].engine.dispose()


def test_settle_freezes_what_is_alive_and_a_full_collection_then_walks_only_newer_objects(built_app):
    gc.collect()
    alive = len(gc.get_objects())
    frozen = settle(built_app)
    assert 0 < gc.get_freeze_count() <= frozen  # frozen objects may still be freed (refcount), none added
    assert frozen >= alive * 0.9  # (nearly) all of it: what was alive, plus the templates compiled just now
    assert len(gc.get_objects()) < alive * 0.05  # what a full collection still walks
    garbage = [[]]
    garbage[0].append(garbage)  # a cycle made after settling is still found and freed
    del garbage
    assert gc.collect() >= 2


def test_settle_compiles_every_page_template_before_the_first_request(built_app):
    env = built_app.jinja_env
    pages = env.list_templates(filter_func=lambda n: n.endswith(".html"))
    assert "inbox.html" in pages and len(pages) > 10
    settle(built_app)
    cached = {key[1] for key in env.cache.keys()} if env.cache is not None else set()
    assert set(pages) <= cached


def test_a_settled_app_still_serves(built_app):
    settle(built_app)
    response = built_app.test_client().get("/healthz")
    assert response.status_code == 200  # a trivial query: no schema needed
    assert response.get_json()["database"] == "ok"
