"""Case page (diagram, data, history) and the task page (form, opinion, actions)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import quote

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.procedures.step_rules import kind_label, opinion_required
from engine.queries.inbox import diagram_marks, merged_data, returned_by
from web.errors import STATUS
from web.services import actor, client_addr, work

bp = Blueprint("cases", __name__)
SIGNATURE_DATA_URL = "data:image/png;base64,"  # what the signature pad writes into the task form


@bp.route("/cases/<int:case_id>")
@login_required
def show(case_id: int):
    me = actor()
    with work() as w:
        case = w.access.visible_case(case_id, me)
        tasks = w.inbox.case_tasks(case_id)
        timers = w.inbox.case_timers(case_id)
        open_tasks = [t for t in tasks if t.status.value == "open"]
        # tasks claimed by (or transferred to) a colleague are theirs, not mine; delegated (委派) to me or
        # added to me as a co-signer (加签) are mine
        my_tasks = [t for t in open_tasks if w.access.acts_on(t, me)]
        history = w.inbox.case_history(case_id)
        return render_template(
            "case.html", case=case, tasks=tasks, timers=timers,
            history=history, history_notes=w.overview.history_notes(history),
            data=merged_data(tasks), labels=w.definitions.field_labels(case.version),
            id_fields=w.definitions.id_number_fields(case.version),
            computed=w.overview.decision_words(case, w.cases.decision_data(case)),
            marks=diagram_marks(case, tasks, timers),
            bpmn_xml=w.definitions.bpmn_xml(case.version),
            region_path=w.directory.region_path(case.region_code),
            show_full_id=me.may_see_full_id(case.subject.region_code),
            my_tasks=my_tasks, holder_ops={t.id: w.access.holder_operations(t, me) for t in my_tasks},
            cc_people=w.access.candidates(case, me),
            transfer_people={t.id: w.access.candidates(case, me, row=t) for t in my_tasks},
            urgeable=[t.id for t in open_tasks if w.access.may_urge(t, me)],
            unstaffed=w.access.unstaffed_ids(open_tasks),
            read_only=not w.access.takes_part(case, me),
            events=w.cases.waiting_events(case, me),
            linked=w.inbox.linked_cases(case),
            attachments=w.operations.attachments(case_id), task_titles={t.id: t.title for t in tasks},
            may_attach=w.access.may_attach_to_case(case, me),
            signatures=w.signatures.latest_by_task(case_id),
            can_withdraw=w.cases.withdrawable(case_id, me) is not None,
        )


def _act(case_id: int, operation, done: str):
    """Run one operation in a unit of work; field errors become a flash, the page is the case page."""
    try:
        with work() as w:
            operation(w)
    except ValidationError as exc:
        flash("未成功:" + ";".join(exc.errors.values()), "error")
        return redirect(url_for("cases.show", case_id=case_id))
    except ConflictError as exc:  # e.g. 催办 again within the hour, 撤回 after the next step acted
        flash(f"未成功:{exc}", "error")
        return redirect(url_for("cases.show", case_id=case_id))
    flash(done, "success")
    return redirect(url_for("cases.show", case_id=case_id))


def _case_of_task(task_id: int) -> int:
    with work() as w:
        return w.access.task_in_visible_case(task_id, actor()).case_id


@bp.route("/tasks/<int:task_id>/claim", methods=["POST"])
@login_required
def claim(task_id: int):
    return _act(_case_of_task(task_id), lambda w: w.operations.claim(task_id, actor()), "已认领")


@bp.route("/tasks/<int:task_id>/unclaim", methods=["POST"])
@login_required
def unclaim(task_id: int):
    return _act(_case_of_task(task_id), lambda w: w.operations.unclaim(task_id, actor()), "已退回待认领")


@bp.route("/tasks/<int:task_id>/transfer", methods=["POST"])
@login_required
def transfer(task_id: int):
    return _act(_case_of_task(task_id), lambda w: w.operations.transfer(
        task_id, actor(), request.form.get("to", "").strip(), request.form.get("opinion")), "已转办")


@bp.route("/tasks/<int:task_id>/urge", methods=["POST"])
@login_required
def urge(task_id: int):
    return _act(_case_of_task(task_id), lambda w: w.operations.urge(task_id, actor(), request.form.get("opinion")),
                "已催办")


@bp.route("/cases/<int:case_id>/cc", methods=["POST"])
@login_required
def cc(case_id: int):
    names = _usernames(" ".join(request.form.getlist("to")))  # picker checkboxes, or names typed
    return _act(case_id, lambda w: w.operations.cc(case_id, actor(), names, request.form.get("opinion")), "已抄送")


@bp.route("/cases/<int:case_id>/withdraw", methods=["POST"])
@login_required
def withdraw(case_id: int):
    return _act(case_id, lambda w: w.cases.withdraw(case_id, actor(), request.form.get("opinion"),
                                                    client_addr=client_addr()), "已撤回")


@bp.route("/cases/<int:case_id>/attachments", methods=["POST"])
@login_required
def upload(case_id: int):
    """Upload to a task (``task_id`` and the step's ``kind``, from the task page) or to the case (its starter)."""
    upload_file = request.files.get("file")
    if upload_file is None:
        flash("请选择文件", "error")
        return redirect(url_for("cases.show", case_id=case_id))
    content = upload_file.read()
    task_id = request.form.get("task_id", "").strip()
    if task_id and not task_id.isdigit():
        flash("未成功:任务不属于本案", "error")
        return redirect(url_for("cases.show", case_id=case_id))
    if request.accept_mimetypes.best == "application/json":  # the task page uploads in place (task.js)
        return _upload_json(case_id, upload_file.filename or "", content, upload_file.mimetype or "",
                            int(task_id) if task_id else None, request.form.get("kind"))
    try:
        return _act(case_id, lambda w: w.operations.add_attachment(
            case_id, actor(), upload_file.filename or "", content, upload_file.mimetype or "",
            task_id=int(task_id) if task_id else None, kind=request.form.get("kind")), "附件已上传")
    except ForbiddenError as exc:  # not one's task, or a case-level upload by someone other than the starter
        flash(f"未成功:{exc}", "error")
        return redirect(url_for("cases.show", case_id=case_id))


def _upload_json(case_id: int, file_name: str, content: bytes, content_type: str, task_id: int | None,
                 kind: str | None):
    """The upload answered as JSON, so the task page keeps what was typed in its form."""
    try:
        with work() as w:
            attachment = w.operations.add_attachment(case_id, actor(), file_name, content, content_type,
                                                     task_id=task_id, kind=kind)
            out = {"id": attachment.id, "file_name": attachment.file_name, "kind": attachment.kind,
                   "kind_label": kind_label(attachment.kind), "is_image": w.overview.is_image(attachment),
                   "url": url_for("cases.download", attachment_id=attachment.id)}
    except ValidationError as exc:
        return jsonify({"error": "无法处理", "message": ";".join(exc.errors.values()) or str(exc),
                        "errors": exc.errors}), 422
    except (ForbiddenError, ConflictError, NotFoundError) as exc:
        return jsonify({"error": "未成功", "message": str(exc)}), STATUS[type(exc)]
    return jsonify(out), 201


@bp.route("/attachments/<int:attachment_id>")
@login_required
def download(attachment_id: int):
    with work() as w:
        attachment, content = w.operations.read_attachment(attachment_id, actor())
    return Response(content, mimetype=attachment.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.file_name)}",
        "X-Content-Type-Options": "nosniff"})


@bp.route("/cases/<int:case_id>/events/<event_id>", methods=["POST"])
@login_required
def raise_event(case_id: int, event_id: str):
    try:
        with work() as w:
            w.cases.raise_event(case_id, event_id, actor(), request.form.get("opinion", ""), client_addr=client_addr())
    except ValidationError as exc:
        flash("提交未成功:" + ";".join(exc.errors.values()), "error")
        return redirect(url_for("cases.show", case_id=case_id))
    flash("已提交", "success")
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/subjects/<int:subject_id>")
@login_required
def subject(subject_id: int):
    """一户一档: every case of a household (or project) across procedures."""
    me = actor()
    with work() as w:
        subj = w.directory.get_subject(subject_id, me)
        return render_template("subject.html", subject=subj, cases=w.inbox.subject_cases(subject_id),
                               region_path=w.directory.region_path(subj.region_code),
                               show_full_id=me.may_see_full_id(subj.region_code))


def _task_page(task_id: int, errors: dict | None = None, submitted: dict | None = None, status: int = 200):
    me = actor()
    with work() as w:
        row = w.access.task_of(task_id, me)
        schema, data = w.cases.task_form(row)
        if submitted is not None:
            data = {**data, **submitted}
        is_open = row.status.value == "open"
        actions = w.access.allowed_actions(row, me)
        notice_kind = w.cases.issuance_kind(row) if is_open else None  # 出具公示: done by issuing the notice
        issue_url = url_for("notices.kind_page", procedure_code=row.case.version.procedure.code,
                            kind_code=notice_kind, case=row.case_id) if notice_kind else None
        tasks = w.inbox.case_tasks(row.case_id)
        case = row.case
        return render_template(
            "task.html", task=row, case=case, schema=schema, data=data, errors=errors or {}, issue_url=issue_url,
            bounds=w.cases.form_bounds(row, schema), dates=w.cases.form_dates(row, schema),
            step_notices=w.notices.step_notices(row, me),
            steps=w.overview.steps(case, tasks, me.may_see_full_id(case.subject.region_code), before=row),
            case_files=w.overview.case_files(case), is_image=w.overview.is_image,
            own_files=w.overview.task_files(row),
            case_people=w.access.candidates(case, me) if is_open else [],
            region_path=w.directory.region_path(case.region_code),
            bpmn_xml=w.definitions.bpmn_xml(case.version),
            marks=diagram_marks(case, tasks, w.inbox.case_timers(row.case_id)),
            can_act=bool(actions), operations=w.access.task_operations(row, me),
            co_signers=w.operations.co_signers(row), owner=w.directory.get_user(row.owner_id) if row.owner_id else None,
            returned=returned_by(tasks, row) if is_open else None,
            actions=actions, return_targets=w.cases.return_targets(row),
            opinion=(submitted or {}).get("_opinion", ""),
            signature=w.signatures.rule_for(row), signed=w.signatures.latest(row.id),
            drawn=(submitted or {}).get("_signature_data", ""),
            opinion_required=opinion_required(w.cases.step_properties(row)),
            attachment_kinds=w.operations.accepted_kinds(row) if w.access.acts_on(row, me) else [],
            progress=w.inbox.instance_progress([row]).get(row.id),
        ), status


@bp.route("/tasks/<int:task_id>/signature", methods=["POST"])
@login_required
def sign(task_id: int):
    """A signature on its own (multipart ``signature``, a PNG), answered in JSON, for a caller that signs before
    deciding; the task page sends the drawing with the decision instead (``complete``)."""
    upload_file = request.files.get("signature")
    try:
        with work() as w:
            attachment = w.signatures.add_signature(task_id, actor(), upload_file.read() if upload_file else b"")
            out = {"id": attachment.id, "url": url_for("cases.download", attachment_id=attachment.id),
                   "created_at": attachment.created_at.isoformat()}
    except ValidationError as exc:
        return jsonify({"error": "无法处理", "message": str(exc), "errors": exc.errors}), 422
    return jsonify(out), 201


@bp.route("/tasks/<int:task_id>")
@login_required
def task(task_id: int):
    return _task_page(task_id)


def form_values(form) -> dict:
    """Submitted form fields as the engine expects them (checklists as lists)."""
    values = {}
    for key in form:
        if key in ("csrf_token", "action", "opinion", "return_to", "sign_to", "sign_position", "delegate_to",
                   "signature_data"):
            continue
        items = form.getlist(key)
        values[key] = items if len(items) > 1 or key.endswith("[]") else items[0]
    return {k.removesuffix("[]"): v for k, v in values.items()}


def _sent_signature() -> bytes | None:
    """The signature sent with the task form: a file part ``signature`` (the no-JS file input) or the pad's
    drawing, a PNG data URL in ``signature_data``; None when neither. What cannot be decoded is handed on
    as it came, so the one signature check (signatures.check_signature_png) refuses it."""
    upload = request.files.get("signature")
    if upload is not None and upload.filename:
        return upload.read()
    drawn = request.form.get("signature_data", "")
    if not drawn:
        return None
    header, _, payload = drawn.partition(",")
    if header == SIGNATURE_DATA_URL.removesuffix(","):
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            pass
    return drawn.encode()


@bp.route("/tasks/<int:task_id>", methods=["POST"])
@login_required
def complete(task_id: int):
    """The task form's decision; a signature sent with it is stored in the same mutation (not on 退回, which
    keeps nothing of the step)."""
    action = request.form.get("action", "")
    outcome: list[str] = []

    def operation(w, opinion, data):
        row = w.access.task_of(task_id, actor())
        title, vote, single = row.title, row.instance_group is not None, row.actions == "approve"
        signature = _sent_signature() if action != "return" else None
        if signature is not None:
            case = w.signatures.complete_signed(task_id, actor(), signature, action, opinion, data,
                                                client_addr=client_addr())
        else:
            case = w.cases.complete_task(task_id, actor(), action, opinion, data, client_addr=client_addr(),
                                         return_to=request.form.get("return_to") or None)
        outcome.append(_outcome(action, title, vote, single, case, w.inbox.case_tasks(case.id)))
        return case.id
    return _submit_task_form(task_id, operation, lambda: outcome[0] if outcome else "已提交")


def _outcome(action: str, title: str, vote: bool, single: bool, case, tasks) -> str:
    """The flash after a decision: what was done, and where the case went (step names, never ids)."""
    open_steps = "、".join(dict.fromkeys(t.title for t in tasks if t.status.value in ("open", "waiting")))
    if action == "return":
        return f"已退回至「{open_steps}」" if open_steps else "已退回"
    if action == "reject" and not vote:
        return f"已不通过「{title}」,案件已结束"
    done = f"已{'提交不同意意见' if action == 'reject' else ('提交' if single else '通过')}「{title}」"
    if open_steps:
        return f"{done},案件已转至「{open_steps}」"
    if case.status.value == "running":
        return f"{done},案件等待中(如公示期)"
    return f"{done},案件已办结"


def _submit_task_form(task_id: int, operation, done: str | Callable[[], str]):
    """Run a task page form's ``operation(w, opinion, data)``, which returns the case id, and go to the case;
    on bad input show the task page again with the errors and what was entered."""
    opinion = request.form.get("opinion", "")
    data = form_values(request.form)
    try:
        with work() as w:
            case_id = operation(w, opinion, data)
    except ValidationError as exc:
        drawn = request.form.get("signature_data", "")  # shown again unless it was the refusal's cause
        drawn = drawn if drawn.startswith(SIGNATURE_DATA_URL) and "signature" not in exc.errors else ""
        return _task_page(task_id, exc.errors, {**data, "_opinion": opinion, "_signature_data": drawn}, 422)
    flash(done() if callable(done) else done, "success")
    return redirect(url_for("cases.show", case_id=case_id))


# ------------------------------------------------------------------ 委派 / 加签 (task page forms)
def _usernames(text: str) -> list[str]:
    return [n for n in text.replace(",", " ").replace("，", " ").replace("、", " ").split() if n]


@bp.route("/tasks/<int:task_id>/delegate", methods=["POST"])
@login_required
def delegate(task_id: int):
    return _act(_case_of_task(task_id), lambda w: w.operations.delegate(
        task_id, actor(), request.form.get("delegate_to", "").strip(), request.form.get("opinion")), "已委派")


@bp.route("/tasks/<int:task_id>/resolve", methods=["POST"])
@login_required
def resolve(task_id: int):
    case_id = _case_of_task(task_id)

    def operation(w, opinion, data):
        w.operations.resolve(task_id, actor(), opinion, data)
        return case_id
    return _submit_task_form(task_id, operation, "已处理完成,任务已交还委派人")


@bp.route("/tasks/<int:task_id>/add-sign", methods=["POST"])
@login_required
def add_sign(task_id: int):
    """加签 from the task page: 前加签 ignores the form; 后加签 submits it as the holder's approval."""
    position = request.form.get("sign_position", "")
    case_id = _case_of_task(task_id)

    def operation(w, opinion, data):
        w.operations.add_sign(task_id, actor(), _usernames(" ".join(request.form.getlist("sign_to"))), position, opinion,
                              data if position == "after" else None)
        return case_id
    return _submit_task_form(task_id, operation, "已加签" + (
        "(前加签),等待加签人处理" if position == "before" else "(后加签),加签人同意后生效"))
