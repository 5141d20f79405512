"""会签/或签: multi-instance user steps, one task row per signer.

A user task with ``bpmn:multiInstanceLoopCharacteristics`` runs one instance per item of its
``loopDataInputRef`` collection: a list of usernames, either entered on an earlier step's form
(checked against the step's role in the case's jurisdiction when that form is submitted) or
computed in the diagram with ``role_members("county_leader")`` (e.g. in the step's preScript),
which lists the active holders of that role at the case's scope for the role's level. Its
``inputDataItem`` holds the instance's signer; each instance is a task row assigned to that signer.

Each vote (通过 = ``approve``, 不同意 = ``reject``) completes its instance. Before the instance
runs the engine writes into its data, and into the step's own data that later elements inherit:

- ``decision`` (``approve``/``reject``) and, if the step declares an ``outputDataItem``, that item
  as ``{"signer", "decision", "opinion"}`` (collected in ``loopDataOutputRef``: the votes later
  steps see);
- the tallies ``nr_of_instances``, ``nr_of_completed_instances``, ``nr_of_approvals`` and
  ``nr_of_rejections`` (Flowable's ``nrOf…`` variables, which yudao users know, in snake case).

The ``completionCondition`` is evaluated on the instance just completed, so it reads the tallies:
all must agree (会签) ``nr_of_rejections > 0``; any one (或签) ``nr_of_approvals > 0``; more than
half ``nr_of_approvals * 2 > nr_of_instances or nr_of_rejections * 2 >= nr_of_instances`` (stops
as soon as the outcome is certain). When it holds, SpiffWorkflow cancels the remaining instances
and their rows become 已取消 (无需处理). A gateway after the step routes on the same tallies.
So in a 会签 one 不同意 decides the step (the gateway rejects it, as in yudao); with a ratio it is
one vote against, and the step fails once the ratio can no longer be met.

A 退回 from an instance is a 退回 of the whole step: the workflow is reset to the earlier step,
every instance and its votes are dropped, and resubmission creates a fresh set of instances.
The ``signMode`` property (``all`` 会签, default; ``any`` 或签; ``ratio`` 会签 by ratio) names the
step in lists, e.g. "领导小组审定(会签 2/3)"; the condition decides.
"""

from __future__ import annotations

from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.util.task import TaskState

from engine.procedures.members import MemberLookup, role_members, using  # noqa: F401 (the runtime's names)
from engine.procedures.step_rules import spec_properties

SIGN_MODES = {"all": "会签", "any": "或签", "ratio": "会签"}

# ---------------------------------------------------------------------------- the diagram's side
def user_step_spec(task_spec) -> bool:
    """A user step: a user task, or a multi-instance activity whose instances are user tasks."""
    if isinstance(task_spec, UserTask):
        return True
    return isinstance(task_spec, MultiInstanceTask) and isinstance(_child_spec(task_spec), UserTask)


def _child_spec(mi_spec):
    return mi_spec._wf_spec.task_specs.get(mi_spec.task_spec)


def instance_parent(task):
    """The multi-instance task a user-task instance belongs to, or None for an ordinary task."""
    parent = task.parent
    if parent is not None and isinstance(parent.task_spec, MultiInstanceTask) \
            and parent.task_spec.task_spec == task.task_spec.name:
        return parent
    return None


def instances(parent) -> list:
    """The instance tasks of a multi-instance task (none for any other task)."""
    if not isinstance(parent.task_spec, MultiInstanceTask):
        return []
    return [c for c in parent.children if c.task_spec.name == parent.task_spec.task_spec]


def step_name(task_spec) -> str:
    """The step's name as drawn (a multi-instance task's own spec carries no name: its instances' does)."""
    if isinstance(task_spec, MultiInstanceTask):
        task_spec = _child_spec(task_spec) or task_spec
    return task_spec.bpmn_name or task_spec.bpmn_id


def group_of(parent) -> str:
    """One activation of a multi-instance task: its first instance's id (a reset to the step re-creates
    the instances under the same task, so the task's own id would mix the rounds)."""
    return str(instances(parent)[0].id)


def progress_label(mode: str | None, done: int, total: int) -> str:
    """How far a 会签/或签 step is, e.g. "会签 2/3" (instances completed of all instances)."""
    return f"{SIGN_MODES.get(mode or 'all', '会签')} {done}/{total}"


def signer_of(task) -> Any:
    """The instance's input item (the signer's username)."""
    item = instance_parent(task).task_spec.input_item
    return item.get(task) if item is not None else None


def sign_mode(task_spec) -> str:
    mode = spec_properties(task_spec).get("signMode", "all")
    return mode if mode in SIGN_MODES else "all"


def record_vote(task, decision: str, opinion: str) -> None:
    """Write one signer's vote and the step's tallies before its instance runs (see the module doc)."""
    parent = instance_parent(task)
    done = [c for c in instances(parent) if c.state == TaskState.COMPLETED and c is not task]
    decisions = [c.data.get("decision") for c in done] + [decision]
    tallies = {
        "nr_of_instances": len(instances(parent)),
        "nr_of_completed_instances": len(decisions),
        "nr_of_approvals": decisions.count("approve"),
        "nr_of_rejections": decisions.count("reject"),
    }
    task.data.update(tallies)
    task.data["decision"] = decision
    parent.data.update(tallies)
    # the step's latest opinion, e.g. the reason an end event after a failed 会签 records
    parent.data["last_opinion"] = opinion
    parent.data["opinions"] = {**parent.data.get("opinions", {}), parent.task_spec.bpmn_id: opinion}
    output = parent.task_spec.output_item
    if output is not None:
        output.set(task, {"signer": signer_of(task), "decision": decision, "opinion": opinion})


def signer_inputs(specs) -> dict[str, Any]:
    """Data keys that feed a multi-instance user step's signers → that step's instance spec."""
    found = {}
    for process in specs:
        for task_spec in process.task_specs.values():
            if isinstance(task_spec, MultiInstanceTask) and user_step_spec(task_spec) \
                    and task_spec.data_input is not None:
                found[task_spec.data_input.bpmn_id] = _child_spec(task_spec)
    return found


def signer_problem(value: Any, members: list[str]) -> str | None:
    """Why a submitted signer list is not acceptable for a step whose role holders are members."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return "请至少选择一名会签人员"
    if len(set(value)) != len(value):
        return "会签人员不能重复"
    outside = [v for v in value if v not in members]
    if outside:
        return f"以下人员不是本辖区该步骤的办理人: {'、'.join(outside)}"
    return None
