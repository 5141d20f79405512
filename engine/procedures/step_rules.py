"""Step-level rules the diagram decides: a required opinion and which attachments a step accepts.

A user task says so in its ``spiffworkflow:properties``:

- ``opinionRequired`` — ``true``: every action on the step needs an opinion (审批意见), approve
  too; ``false`` or absent: only 不通过 and 退回 need one.
- ``attachments`` — what the step accepts: labels separated by commas (e.g. ``房屋照片,鉴定报告``,
  offered as the upload's kind), or ``none``; absent: general attachments (kind ``file``).

An upload is tied to an open task the uploader may act on (the step decides the kind), or is
a case-level upload (kind ``file``) by the case's starter while the case runs. Handwritten
signatures (kind ``signature``) keep their own rule (engine/runtime/signatures.py). The rules are read
from the version's spec, never from a loaded case; deploy and the studio check the values with
``step_rule_problems``.
"""

from __future__ import annotations

from engine.procedures.steps import GENERAL_KIND, NO_ATTACHMENTS, StepProperties, raw_properties

OPINION_REQUIRED = "opinionRequired"
ATTACHMENTS = "attachments"
GENERAL_LABEL = "一般附件"
RESERVED_KINDS = (GENERAL_KIND, "signature", NO_ATTACHMENTS)
MAX_KIND_LENGTH = 16  # attachment.kind is String(16)
MAX_KINDS = 10
OPINION_MISSING = "此步骤必须填写审批意见"
OPINION_MISSING_REJECT = "不通过或退回时必须填写意见"
BOOLEAN_VALUES = ("true", "false")


def spec_properties(task_spec) -> dict[str, str]:
    """A task spec's raw ``spiffworkflow:properties`` ({} when it has none). Prefer
    ``engine.procedures.steps.properties_of`` (typed, parsed once per spec); this stays for the checks."""
    return raw_properties(task_spec)


def step_spec(definitions, version, spec_name: str):
    """The task spec of step spec_name in a version, the one carrying its properties (read from the
    version's spec, no case load), or None."""
    spec, subprocess_specs = definitions.specs(version)
    for process in (spec, *subprocess_specs.values()):
        for task_spec in process.task_specs.values():
            if getattr(task_spec, "bpmn_id", None) == spec_name and spec_properties(task_spec):
                return task_spec
    return None


def step_properties(definitions, version, spec_name: str) -> dict[str, str]:
    """The properties of the user task spec_name in a version (read from its spec, no case load)."""
    return spec_properties(step_spec(definitions, version, spec_name))


def opinion_required(props: dict[str, str]) -> bool:
    """Whether every action on the step needs an opinion (``opinionRequired="true"``)."""
    return StepProperties.parse(props).opinion_required


def missing_opinion_message(props: dict[str, str], action: str) -> str | None:
    """Why an empty opinion is refused for action on this step, or None when it may be empty."""
    if opinion_required(props):
        return OPINION_MISSING
    if action in ("reject", "return"):
        return OPINION_MISSING_REJECT
    return None


def attachment_kinds(props: dict[str, str]) -> list[str]:
    """The attachment kinds a step accepts: its labels, [] for ``none``, [``file``] when not stated."""
    return list(StepProperties.parse(props).attachments)


def kind_label(kind: str) -> str:
    """How a kind is shown: the step's own label, 一般附件 for ``file``, 签字 for a signature."""
    return {GENERAL_KIND: GENERAL_LABEL, "signature": "签字"}.get(kind, kind)


def step_rule_problems(props: dict[str, str]) -> list[str]:
    """What is wrong with a user task's ``opinionRequired`` and ``attachments`` (for deploy and the studio)."""
    problems = []
    if OPINION_REQUIRED in props and (props[OPINION_REQUIRED] or "").strip().lower() not in BOOLEAN_VALUES:
        problems.append(f"opinionRequired 只能是 true 或 false(现为 {props[OPINION_REQUIRED]!r})")
    raw = props.get(ATTACHMENTS)
    if raw is not None and raw.strip() and raw.strip() != NO_ATTACHMENTS:
        labels = [k.strip() for k in raw.replace("，", ",").split(",")]
        if any(not label for label in labels):
            problems.append("attachments 中有空的附件类别(用逗号分隔,如 房屋照片,鉴定报告)")
        bad = [label for label in labels if label in RESERVED_KINDS or len(label) > MAX_KIND_LENGTH]
        if bad:
            problems.append(f"attachments 的附件类别 {'、'.join(bad)} 无效:不能是 file、signature、none,"
                            f"每项不超过 {MAX_KIND_LENGTH} 字;不接受附件时只写 none")
        if len(labels) != len(set(labels)):
            problems.append("attachments 中有重复的附件类别")
        if len(labels) > MAX_KINDS:
            problems.append(f"attachments 最多 {MAX_KINDS} 个附件类别")
    return problems
