"""The API's published contract: the OpenAPI document matches the routes, procedures are listed."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from engine.models import Procedure, ProcedureVersion

SPEC_URL = "/api/v1/openapi.json"


def _served(app) -> dict[str, set[str]]:
    """Path template ({param} style, params unnamed) → methods, for every route under /api/v1."""
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", rule.rule)
            served.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return served


def _documented(spec: dict) -> dict[str, set[str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {re.sub(r"\{[^}]+\}", "{}", path): {m for m in item if m in methods}
            for path, item in spec["paths"].items()}


def test_the_openapi_document_is_valid_json_for_openapi_3(client):
    response = client.get(SPEC_URL)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"]


def test_the_openapi_document_lists_every_path_and_method_the_api_serves_and_nothing_else(app, client):
    spec = client.get(SPEC_URL).get_json()
    served = _served(app)
    # the document does not describe the URL it is served from
    assert served.pop("/api/v1/openapi.json") == {"get"}
    documented = _documented(spec)
    undocumented = sorted(f"{m.upper()} {p}" for p, ms in served.items() for m in ms - documented.get(p, set()))
    not_served = sorted(f"{m.upper()} {p}" for p, ms in documented.items() for m in ms - served.get(p, set()))
    assert undocumented == [], "served by the API but missing from openapi.json"
    assert not_served == [], "in openapi.json but not served"


def test_every_path_parameter_in_the_openapi_document_is_declared(client):
    spec = client.get(SPEC_URL).get_json()
    for path, item in spec["paths"].items():
        for name in re.findall(r"\{([^}]+)\}", path):
            for method, operation in item.items():
                if method == "parameters":
                    continue
                declared = item.get("parameters", []) + operation.get("parameters", [])
                resolved = [_resolve(spec, p) for p in declared]
                assert any(p.get("name") == name and p.get("in") == "path" for p in resolved), (path, method)


def _resolve(spec: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if not ref:
        return node
    target = spec
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def test_every_ref_in_the_openapi_document_resolves(client):
    spec = client.get(SPEC_URL).get_json()
    refs = re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(spec))
    assert refs
    for ref in refs:
        assert ref.startswith("#/")
        _resolve(spec, {"$ref": ref})  # raises KeyError when dangling


def test_the_procedures_list_has_the_exit_procedure_with_its_version_and_content_hash(db, client_for):
    response = client_for("demo_township").get("/api/v1/procedures")
    assert response.status_code == 200
    listed = {p["code"]: p for p in response.get_json()["procedures"]}
    exit_procedure = listed["monitoring_exit"]
    assert exit_procedure["name"] == "监测户风险消除退出(四步法)"
    assert isinstance(exit_procedure["version"], int) and exit_procedure["version"] >= 1
    assert re.fullmatch(r"[0-9a-f]{64}", exit_procedure["content_hash"])
    with db.uow() as work:
        newest = work.session.scalars(
            select(ProcedureVersion).join(Procedure).where(Procedure.code == "monitoring_exit")
            .order_by(ProcedureVersion.version.desc())).first()
        assert (exit_procedure["version"], exit_procedure["content_hash"]) == (newest.version, newest.content_hash)


def test_a_started_case_records_the_procedure_version_it_runs(db, client_for):
    village = client_for("demo_village")
    version = {p["code"]: p["version"] for p in village.get("/api/v1/procedures").get_json()["procedures"]}
    started = village.post("/api/v1/cases", json={"procedure": "monitoring_exit",
                                                  "subject": {"id": db.household("李秀英")}}).get_json()
    assert started["procedure_version"] == version["monitoring_exit"]


def test_every_operation_documents_the_statuses_the_edge_and_the_guard_answer(client):
    """Issue 15: 401 when not logged in, 422 for input refused at the edge, 404 for ids out of range,
    and for requests with a body 400 (not JSON), 403 (cross-site), 413 (too large), 415 (not JSON).
    The fuzz test (test_hardening_fuzz.py) checks that no other status is ever answered."""
    spec = client.get(SPEC_URL).get_json()
    missing = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            want = {"422"} | ({"404"} if "{" in path else set())
            if (path, method) != ("/api/v1/session", "post"):
                want.add("401")
            if method != "get":
                want |= {"400", "403", "413", "415"}
            missing += [f"{method.upper()} {path}: {code}" for code in sorted(want - set(operation["responses"]))]
    assert missing == []
