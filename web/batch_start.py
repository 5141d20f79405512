"""批量发起 (定期预判): choose subjects (registry filters or an uploaded ID list), start one procedure for
all of them as a background job, and watch its progress (engine/registry/batch_starts.py)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ValidationError
from engine.queries.inbox import chosen_region
from engine.registry.batch_starts import MAX_SUBJECTS, OUTCOME_LABELS, STATUS_LABELS, lines_of_upload, run_start_batch
from engine.registry.catalog import HOUSEHOLD_CATEGORIES
from engine.registry.service import SubjectSearch
from engine.uow import UnitOfWork
from web.services import actor, client_addr, clock, state, work

log = logging.getLogger(__name__)
bp = Blueprint("batch_start", __name__, url_prefix="/cases/batch-start")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)  # its runner: web.bind_state


class StartBatchRunner:
    """Runs start batches one at a time in a background thread of this process."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xiangflow-start-batches")
        self._futures: dict[int, Future] = {}

    def submit(self, factory, clock_, storage_dir: Path, batch_id: int) -> None:
        def open_work() -> UnitOfWork:
            return UnitOfWork(factory, clock_, storage_dir)

        self._futures[batch_id] = self._executor.submit(_run_logged, open_work, batch_id)

    def wait(self, batch_id: int, timeout: float | None = None):
        """Block until the batch's thread finished (tests); return its final status."""
        future = self._futures.get(batch_id)
        return future.result(timeout=timeout) if future else None


def _run_logged(open_work, batch_id: int) -> str:
    try:
        return run_start_batch(open_work, batch_id)
    except Exception:  # a background thread has nobody to raise to; the batch resumes when resubmitted
        log.exception("start batch %s stopped", batch_id)
        raise


def _region_arg() -> str:
    """The region the page's cascading picker names (its selects all submit ``region``: the deepest consistent one)."""
    return chosen_region(request.values.getlist("region"))


def _page(errors: dict | None = None, subjects=None, status: int = 200, source: str = ""):
    me = actor()
    args = request.values
    with work() as w:
        procedures = w.definitions.available_to(me)
        codes = [v.procedure.code for v in procedures]
        procedure = args.get("procedure") if args.get("procedure") in codes else (codes[0] if codes else "")
        return render_template(
            "batch_start.html", procedures=procedures, procedure=procedure,
            region_picker_levels=w.inbox.region_picker(me, _region_arg()),
            categories=HOUSEHOLD_CATEGORIES, form=args, errors=errors or {}, subjects=subjects, source=source,
            max_subjects=MAX_SUBJECTS), status


@bp.route("/", methods=["GET"])
@login_required
def index():
    if not request.args.get("preview"):
        return _page()
    me = actor()
    try:
        search = SubjectSearch.parse({k: v for k, v in request.args.items() if k in ("name", "category")}
                                     | {"region": _region_arg()})
        with work() as w:
            subjects = w.batch_starts.matching(me, request.args.get("procedure", ""), search)
            chosen = _preview_rows(subjects)
    except ValidationError as exc:
        return _page(exc.errors, status=422)
    return _page(subjects=chosen, source="filter")


def _preview_rows(subjects) -> list[tuple[int, str, str, str]]:
    """The preview table's rows: id, name, region code, category."""
    return [(s.id, s.name, s.region_code, (s.attrs or {}).get("category", "")) for s in subjects]


@bp.route("/list", methods=["POST"])
@login_required
def from_list():
    """An uploaded list of ID numbers (.xlsx first column, .csv/.txt one per line) → the preview."""
    me = actor()
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise ValidationError("请选择名单文件", {"file": "请选择名单文件"})
        lines = lines_of_upload(upload.filename, upload.read())
        with work() as w:
            subjects = w.batch_starts.from_id_numbers(me, request.form.get("procedure", ""), lines)
            chosen = _preview_rows(subjects)
    except ValidationError as exc:
        return _page(exc.errors, status=422)
    return _page(subjects=chosen, source="list")


@bp.route("/", methods=["POST"])
@login_required
def create():
    raw = request.form.getlist("subject_id")
    ids = [int(v) for v in raw if v.isdigit() and len(v) <= 10]
    if len(ids) != len(raw):
        return _page({"subject_ids": "所选对象编号无效"}, status=422)
    try:
        with work() as w:
            batch = w.batch_starts.create(actor(), request.form.get("procedure", ""), ids, client_addr=client_addr())
            batch_id = batch.id
    except ValidationError as exc:
        return _page(exc.errors, status=422)
    current_app.extensions["xiangflow_start_batches"].submit(
        state().factory, clock(), Path(current_app.config["XIANGFLOW_STORAGE_DIR"]), batch_id)
    return redirect(url_for("batch_start.show", batch_id=batch_id))


@bp.route("/<int:batch_id>")
@login_required
def show(batch_id: int):
    with work() as w:
        batch = w.batch_starts.get(actor(), batch_id)
        name = w.definitions.latest(batch.procedure_code).procedure.name
        return render_template("batch_start_progress.html", batch=batch, procedure_name=name,
                               progress=w.batch_starts.progress(batch), status_labels=STATUS_LABELS,
                               outcome_labels=OUTCOME_LABELS)


@bp.route("/<int:batch_id>/progress")
@login_required
def progress(batch_id: int):
    with work() as w:
        return jsonify(w.batch_starts.progress(w.batch_starts.get(actor(), batch_id)))
