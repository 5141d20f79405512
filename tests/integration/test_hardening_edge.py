"""Issue 15, input at the edge: ids, pages, dates, JSON size/depth, NUL and lone surrogates → 4xx, never 5xx,
and nothing changes. Runs on SQLite and (with DATABASE_URL) on PostgreSQL, where integer ids overflow at 2^31."""

from __future__ import annotations

import json
import re

import pytest

from engine.core.bounds import MAX_ID

HUGE_IDS = [2**31, 2**63, 10**30, "9" * 5000]


def _int_rules(app):
    for rule in app.url_map.iter_rules():
        if "int" in {type(c).__name__ for c in rule._converters.values()} or re.search(r"<int:", rule.rule):
            yield rule


@pytest.mark.parametrize("huge", HUGE_IDS, ids=["2^31", "2^63", "10^30", "5000-digits"])
def test_every_int_route_answers_an_id_beyond_the_database_integer_with_404(app, client_for, huge):
    admin = client_for("demo_sysadmin")
    rules = list(_int_rules(app))
    assert len(rules) > 30  # API, HTML, studio, notices, admin
    for rule in rules:
        url = re.sub(r"<int:[^>]+>", str(huge), rule.rule)
        url = re.sub(r"<[^>]+>", "x", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = admin.open(url, method=method, json={} if method != "GET" else None)
            assert response.status_code == 404, (method, url, response.status_code)


def test_the_largest_database_id_is_an_ordinary_not_found(client_for):
    village = client_for("demo_village")
    assert village.get(f"/api/v1/cases/{MAX_ID}").status_code == 404
    assert village.get(f"/cases/{MAX_ID}").status_code == 404


@pytest.mark.parametrize("query, field", [
    ({"per_page": 10**9}, "per_page"), ({"per_page": "0"}, "per_page"), ({"per_page": "9" * 5000}, "per_page"),
    ({"date_from": "0001-01-01"}, "date_from"), ({"date_to": "9999-12-31"}, "date_to"),
    ({"name": "李\x00"}, "name"),
], ids=["per-page", "per-page-0", "per-page-5000-digits", "date-0001", "date-9999", "nul"])
def test_bad_paging_dates_and_nul_in_the_task_search_are_422_naming_the_field(client_for, query, field):
    village = client_for("demo_village")
    api = village.get("/api/v1/tasks", query_string=query)
    assert api.status_code == 422, api.get_data(as_text=True)
    assert field in api.get_json()["errors"]
    if field != "per_page":  # the HTML inbox has a fixed page size
        page = village.get("/", query_string=query)
        assert page.status_code == 422
        assert field in page.get_data(as_text=True)


def test_a_json_body_nested_100000_deep_is_refused_before_login(client):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/session", data=deep, content_type="application/json")
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"body": "JSON 嵌套不能超过 32 层"}
    moderately = {"username": "demo_village", "password": "x", "extra": json.loads("[" * 40 + "]" * 40)}
    assert client.post("/api/v1/session", json=moderately).status_code == 422


def test_a_json_body_over_the_size_limit_is_413_and_malformed_json_is_400(app, client):
    limit = app.config["XIANGFLOW_MAX_JSON_BYTES"]
    big = client.post("/api/v1/session", data='{"username": "' + "a" * limit + '"}', content_type="application/json")
    assert big.status_code == 413
    assert "JSON 请求体不能超过" in big.get_json()["message"]
    bad = client.post("/api/v1/session", data='{"username": ', content_type="application/json")
    assert bad.status_code == 400
    assert bad.get_json()["message"] == "请求体不是有效的 JSON"


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\x00"], ids=["lone-high", "lone-low", "nul"])
def test_a_lone_surrogate_or_nul_in_a_login_is_422_naming_the_field(client, text):
    body = json.dumps({"username": "demo_village", "password": text})  # json.dumps escapes them as \uXXXX
    response = client.post("/api/v1/session", data=body, content_type="application/json")
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["password"]


@pytest.mark.parametrize("opinion", ["\ud83d", "同意\x00"], ids=["lone-surrogate", "nul"])
def test_a_bad_character_in_an_opinion_is_422_and_changes_nothing(db, client_for, exit_case, snapshot, opinion):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    body = json.dumps({"action": "approve", "opinion": opinion, "data": {}})
    refused = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", data=body,
                                              content_type="application/json")
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"opinion": "含有无效字符(空字符或不成对的代理字符)"}
    assert snapshot() == before


def test_a_real_emoji_pair_is_accepted(client):
    response = client.post("/api/v1/session", json={"username": "demo_village😀", "password": "x"})
    assert response.status_code == 401  # an ordinary wrong login, not a refusal of the characters


def test_an_id_in_a_json_field_beyond_the_integer_range_is_422(db, client_for, snapshot):
    before = snapshot()
    started = client_for("demo_village").post("/api/v1/cases", json={"procedure": "monitoring_exit",
                                                                     "subject": {"id": 2**40}})
    assert started.status_code == 422
    assert started.get_json()["errors"] == {"subject.id": f"编号超出范围(0 至 {MAX_ID})"}
    assert snapshot() == before


def test_an_id_in_an_html_form_field_beyond_the_integer_range_is_422(client_for, csrf_token):
    village = client_for("demo_village")
    token = csrf_token(village, "/cases/new")
    page = village.post("/cases/new", data={"csrf_token": token, "procedure": "monitoring_exit",
                                            "subject_id": str(2**40)})
    assert page.status_code == 422
    assert "编号超出范围" in page.get_data(as_text=True)


def test_a_far_date_in_form_data_is_422_before_the_engine_sees_it(db, client_for, exit_case, snapshot):
    from engine import demo_data as D

    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    refused = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", json={
        "action": "approve", "opinion": "同意", "data": {**D.HOUSEHOLD_CHECK, "check_date": "9999-12-31"}})
    assert refused.status_code == 422
    assert list(refused.get_json()["errors"]) == ["data.check_date"]
    assert snapshot() == before


def test_nul_in_a_path_value_is_422(client_for):
    response = client_for("demo_sysadmin").get("/notices/n/AB%00CD")
    assert response.status_code == 422
