"""The procedure checks: one registry of small checks, each ``check(bundle) -> list[Problem]`` naming the
element (id, name, file) it concerns, in Chinese. Deploy (``definitions.compile_bundle``) and the studio
run the same registry; deploy refuses on any problem, the studio shows them on their elements.

The checks run in phases; a phase runs only when the ones before found nothing, so a broken file set is
not also reported as a hundred missing elements, and SpiffWorkflow only parses a model that passed
XiangFlow's own rules:

1. files  — the file set's shape (names, sizes, one procedure.json, one BPMN file)
2. model  — well-formed XML, procedure.json, forms, decisions, the diagram's structure, step properties,
            expressions and scripts, the notice catalog
3. engine — SpiffWorkflow parses the diagram and decisions (the spec deploy stores)
4. spec   — what needs the parsed spec: user tasks and the start event in a role's lane

``web/assets/src/bpmnlint-plugin-xiangflow`` states three of these rules for the editor as you draw
(lane → role, a user task's form, no event-based gateway); tests/unit/test_checks_registry.py runs the
lane rule through both and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.procedures.checks import decisions, engine, expressions, files, forms, notices, steps, structure
from engine.procedures.checks.bundle import CheckContext, CheckedBundle
from engine.procedures.checks.problem import Problem, ProblemsError

Check = Callable[[CheckedBundle], list[Problem]]

REGISTRY: tuple[tuple[str, tuple[Check, ...]], ...] = (
    ("files", (files.file_set,)),
    ("model", (
        files.xml_well_formed, files.manifest_fields, files.template_json,
        forms.form_schemas, forms.form_fields,
        decisions.decision_tables,
        structure.executable_process, structure.lane_roles, structure.supported_elements,
        structure.flow_reachability, structure.gateway_branches,
        steps.user_task_forms, steps.user_task_actions, steps.user_task_time_limits, steps.user_task_rules,
        steps.notice_kinds, steps.required_notices, steps.case_statuses, steps.linked_procedures, steps.cc_roles,
        decisions.business_rule_decisions,
        expressions.conditions, expressions.timers, expressions.due_dates, expressions.countersigns,
        expressions.scripts,
        notices.notice_catalog,
    )),
    ("engine", (engine.spiff_parse,)),
    ("spec", (engine.user_task_lanes, engine.start_lane)),
)

__all__ = ["REGISTRY", "CheckContext", "CheckedBundle", "Problem", "ProblemsError", "check", "inspect", "passed_in"]


def inspect(files_or_bundle: Any, context: CheckContext) -> CheckedBundle:
    """Run the registry over a bundle's files; the result holds ``problems`` and, when SpiffWorkflow parsed
    it, ``spec`` and ``subprocess_specs``."""
    files_ = getattr(files_or_bundle, "files", files_or_bundle)
    bundle = CheckedBundle(files_, context)
    for _phase, checks in REGISTRY:
        for one in checks:
            for problem in one(bundle):
                if problem not in bundle.problems:
                    bundle.problems.append(problem)
        if bundle.problems:
            break
    return bundle


def check(files_or_bundle: Any, context: CheckContext) -> list[Problem]:
    """Every problem of a bundle (or its files), each naming its element or file; [] when it may deploy."""
    return inspect(files_or_bundle, context).problems


def passed_in(file_sets: Iterable[dict[str, str]]) -> dict[str, frozenset[str]]:
    """Procedure code → the data keys the given procedures pass when they start it (``startsProcedure`` +
    ``passData``): names that procedure's expressions may read."""
    from engine.procedures.checks.bundle import q
    from engine.procedures.definitions import safe_xml

    found: dict[str, set[str]] = {}
    for file_set in file_sets:
        for name, text in file_set.items():
            if not name.startswith("bpmn/"):
                continue
            bundle = CheckedBundle({}, CheckContext(frozenset()))
            for node in safe_xml(text, name).iter(q("*")):
                if node.get("id"):
                    props = bundle.properties(node)
                    if props.starts_procedure:
                        found.setdefault(props.starts_procedure, set()).update(props.pass_data)
    return {code: frozenset(keys) for code, keys in found.items()}
