"""退回 (`return_to`): the earlier user steps a return may go back to, and the reset that reopens one.

A case's path is the task's ancestors in SpiffWorkflow's task tree. At a parallel join the branch
that arrives last carries on: the continuation hangs under its join instance, and the join instances
of the other branches were cancelled when it fired (UnstructuredJoin). Their completed steps are on
the case's path as well. Returning to one of them resets that branch and puts the fired join back to
waiting with its continuation dropped: the other branches keep their work, the join waits only for
the branch being redone, fires once when it arrives again (merging every branch's data), and the
continuation is created once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.util.task import TaskState

from engine.procedures.step_rules import spec_properties
from engine.runtime import countersign


@dataclass(frozen=True)
class ReturnTarget:
    """An earlier user step; `via_join` is the fired join whose other branch holds it (None on the
    task's own path)."""

    task: Any
    via_join: Any = None


def _ancestor_ids(task) -> set:
    ids, node = set(), task.parent
    while node is not None:
        ids.add(node.id)
        node = node.parent
    return ids


def _is_fired_join(task) -> bool:
    return isinstance(task.task_spec, Join) and task.state == TaskState.COMPLETED


def _other_arrivals(join_task) -> list[tuple[Any, Any]]:
    """(branch's join instance, split task) for the other branches that arrived at this firing.

    An instance of an earlier round (a loop through the parallel section) is left out: between the
    firing join and the split it shares with it lies another instance of the same join.
    """
    above = _ancestor_ids(join_task)
    arrivals = []
    for other in join_task.workflow.tasks.values():
        if other is join_task or other.task_spec is not join_task.task_spec or other.id in above \
                or not other.has_state(TaskState.FINISHED_MASK) or other.parent is None:
            continue
        split = other.parent
        while split is not None and split.id not in above:
            split = split.parent
        if split is None:
            continue
        node, same_round = join_task.parent, True
        while node is not None and node is not split:
            if node.task_spec is join_task.task_spec:
                same_round = False
                break
            node = node.parent
        if same_round:
            arrivals.append((other, split))
    return arrivals


def _path(start, stop_id, via_join) -> list[ReturnTarget]:
    """Tasks from start up to (not including) the task with stop_id, each fired join followed, where
    the walk reaches their split, by the other branches' tasks."""
    path: list[ReturnTarget] = []
    pending: dict[Any, list[ReturnTarget]] = {}
    node = start
    while node is not None and node.id != stop_id:
        path.extend(pending.pop(node.id, []))
        path.append(ReturnTarget(node, via_join))
        if _is_fired_join(node):
            for other, split in _other_arrivals(node):
                pending.setdefault(split.id, []).extend(_path(other.parent, split.id, via_join or node))
        node = node.parent
    return path


def earlier_user_steps(task) -> list[ReturnTarget]:
    """Completed user steps on the path to task, nearest first (what 退回 may go back to).

    After a loop (an objection sending the case back) the path holds an earlier round of the same
    steps: each step counts once, at its latest round, and never the task's own step. A 会签 step
    counts as one step (its multi-instance task, whose reset re-creates every instance). An issuance
    step (出具公示) is no decision to go back to: returning past it re-runs it anyway. After a parallel
    join the branch that completed it comes first, then the other branches, then the steps before the
    split.
    """
    earlier, seen = [], {task.task_spec.bpmn_id}
    for target in _path(task.parent, None, None):
        node = target.task
        if spec_properties(node.task_spec).get("noticeKind"):
            continue
        if countersign.user_step_spec(node.task_spec) and node.state == TaskState.COMPLETED \
                and node.task_spec.bpmn_id not in seen:
            earlier.append(target)
            seen.add(node.task_spec.bpmn_id)
    return earlier


def reset_to(workflow: BpmnWorkflow, target: ReturnTarget) -> None:
    """Reopen the target step; past a join from another branch, send that join back to waiting.

    The fired join's continuation (the returning task among it) is dropped; when the redone branch
    arrives the join fires on its instance, which cancels this waiting one and merges the data of
    every branch (UnstructuredJoin), so the continuation runs once.
    """
    workflow.reset_from_task_id(target.task.id)
    join = target.via_join
    if join is not None:
        join._drop_children(force=True)
        join._set_state(TaskState.WAITING)
