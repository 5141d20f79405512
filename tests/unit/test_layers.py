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


# ----------------------------------------------------------------------------- the package order
ROOT = WEB.parent
ENGINE = ROOT / "engine"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Imports inside functions that still go upward, each with its reason; the list may only shrink (an entry
# that no longer matches an import fails the test, so a removed import is removed here too).
UPWARD_INSIDE_FUNCTIONS = {
    # the timer worker process opens units of work (the composition root) from inside runtime/
    ("engine.runtime.timers", "engine.uow"),
    # notice batch workers (separate processes) build each transaction's services with the composition root
    ("engine.notices.batches", "engine.uow"),
}
# Module-level imports that go upward: none.
UPWARD_AT_MODULE_LEVEL: set[tuple[str, str]] = set()
# Module-level cycles, each with its reason (may only shrink).
CYCLES_ALLOWED = {
    # models/__init__ re-exports the registry tables, which subclass its Base (defined before the import)
    frozenset({"engine.models", "engine.models.registry"}),
}


def _layers() -> list[str]:
    """The layers of docs/architecture.md's list, top first: ``web``, ``engine.uow``, ``engine.studio`` …"""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    layers = []
    for line in block.splitlines():
        if line[:1] not in ("", " "):
            name = line.split()[0].rstrip("/").removesuffix(".py").replace("/", ".")
            layers.append(name)
    return layers


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted([*ENGINE.rglob("*.py"), *WEB.glob("*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for each import; ``if TYPE_CHECKING:`` blocks are skipped."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.extend((f"{child.module}.{a.name}", in_function, child.lineno) for a in child.names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (``engine.models.Case`` → ``engine.models``), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _layer_of(module: str, layers: list[str]) -> str | None:
    return next((layer for layer in layers if module == layer or module.startswith(layer + ".")), None)


def test_every_engine_package_and_top_module_has_a_place_in_the_architectures_layer_list():
    layers = _layers()
    assert layers[0] == "web" and layers[-1] == "engine.core"
    unplaced = sorted({m for m in _modules() if m != "engine" and _layer_of(m, layers) is None})
    assert unplaced == []


def test_imports_run_down_the_layers_and_engine_never_imports_flask_or_web():
    layers, modules = _layers(), _modules()
    rank = {layer: i for i, layer in enumerate(layers)}  # 0 is the top
    upward_in_functions, upward_at_module_level, offenders = set(), set(), []
    for module, path in modules.items():
        if module == "engine":
            continue
        own = _layer_of(module, layers)
        for name, in_function, line in _imports(path):
            if module.startswith("engine") and name.split(".")[0] in ("flask", "flask_login", "flask_wtf", "web",
                                                                       "werkzeug"):
                offenders.append(f"{module}:{line} imports {name}")
                continue
            target = _resolve(name, modules)
            if target is None or target == "engine":
                continue
            other = _layer_of(target, layers)
            if other == own or rank[other] > rank[own]:
                continue
            (upward_in_functions if in_function else upward_at_module_level).add((module, target))
    assert offenders == []
    assert upward_at_module_level == UPWARD_AT_MODULE_LEVEL
    assert upward_in_functions == UPWARD_INSIDE_FUNCTIONS


def test_module_level_imports_between_engine_modules_form_no_cycle():
    modules = _modules()
    graph = {m: set() for m in modules if m.startswith("engine")}
    for module in graph:
        for name, in_function, _line in _imports(modules[module]):
            target = _resolve(name, modules)
            if not in_function and target in graph and target != module:
                graph[module].add(target)
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    assert set(cycles) == CYCLES_ALLOWED


# ----------------------------------------------------------------------------- one composition root
# Services constructed outside engine/uow.py, each with its reason (may only shrink).
CONSTRUCTED_OUTSIDE_THE_ROOT = {
    # constructor fallbacks of services whose collaborators the root always passes
    ("engine/notices/service.py", "CaseService"),
    ("engine/studio/ownership.py", "CaseService"),
    ("engine/studio/ownership.py", "DefinitionService"),
    ("engine/runtime/cases.py", "AccessPolicy"),
    ("engine/runtime/cases.py", "DefinitionService"),
    # the case service's own notifier, shared by the operations (work.notifications is this one)
    ("engine/runtime/cases.py", "NotificationService"),
}


def test_services_are_built_by_the_unit_of_work_not_by_web_cli_tests_or_bench():
    service = re.compile(r"(Service|Queries|Policy)$")
    names = {node.name for path in ENGINE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text("utf-8")))
             if isinstance(node, ast.ClassDef) and service.search(node.name)}
    assert {"CaseService", "NoticeService", "StudioService", "AccessPolicy", "InboxQueries"} <= names
    found = set()
    for folder in ("engine", "web", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            if where == "engine/uow.py":
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                    if name in names:
                        found.add((where, name))
    assert found == CONSTRUCTED_OUTSIDE_THE_ROOT
