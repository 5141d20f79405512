"""The layering rule that ruff cannot express per package: views call the engine and render, so the
web layer never builds SQL (no SQLAlchemy imports, no queries on the session) and templates never query."""

from __future__ import annotations

import ast
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_the_web_layer_does_not_import_sqlalchemy_or_query_the_session():
    offenders = []
    for path in sorted(WEB.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                offenders.append(f"{path.name}:{node.lineno} imports sqlalchemy")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlalchemy" for a in node.names):
                offenders.append(f"{path.name}:{node.lineno} imports sqlalchemy")
            elif isinstance(node, ast.Attribute) and node.attr in {"execute", "scalar", "scalars", "query", "get"} \
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "session":
                offenders.append(f"{path.name}:{node.lineno} calls session.{node.attr}")
    assert offenders == []


def test_templates_do_not_query():
    pattern = re.compile(r"\b(session|query|select)\s*\(|\.session\b")
    offenders = [f"{path.relative_to(WEB)}:{n}" for path in sorted((WEB / "templates").rglob("*.html"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
