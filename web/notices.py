"""Signed notices: issuing and printing pages for office staff, public verification, batch jobs, CLI.

``/notices/…`` needs a login and stays inside the user's jurisdiction (404 outside it);
``/verify/<serial>`` is public: anyone holding a printed notice scans its QR code and sees who
issued it, when, what it covers and its SHA-256, and may upload a PDF to check it is the issued,
unaltered file. Batches run in a background thread of the serving process (one at a time) and
the page polls their progress; ``flask notices work`` runs queued or abandoned batches from a
separate process, ``flask notices batch`` is the command-line equivalent with a progress bar.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor

import click
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import login_required

from engine.core.errors import ConflictError, ValidationError, XiangFlowError
from engine.models import NoticeBatchStatus
from engine.notices.batches import merge_pdfs, run_batch, run_queued_batches, write_zip
from engine.notices.pki import PASSPHRASE_ENV, certificate_summary, parse_office
from web.services import actor, client_addr, clock, state, work

log = logging.getLogger(__name__)

bp = Blueprint("notices", __name__)
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
BATCH_STATUS_LABELS = {"queued": "排队中", "running": "进行中", "done": "已完成", "failed": "失败"}


def init_app(app: Flask) -> None:
    """Blueprint and the ``flask notices`` commands (the batch runner: web.bind_state)."""
    app.register_blueprint(bp)
    register_cli(app)


class BatchRunner:
    """Runs batches one at a time in a background thread of this process."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xiangflow-notices")
        self._futures: dict[int, Future] = {}

    def submit(self, factory, clock_, batch_id: int) -> None:
        self._futures[batch_id] = self._executor.submit(_run_logged, factory, clock_, batch_id)

    def wait(self, batch_id: int, timeout: float | None = None):
        """Block until the batch's thread finished (tests and shutdown); return its status."""
        future = self._futures.get(batch_id)
        return future.result(timeout=timeout) if future else None


def _run_logged(factory, clock_, batch_id: int):
    try:
        return run_batch(factory, clock_, batch_id)
    except Exception:  # a background thread has nobody to raise to: log it; the lease lets a worker resume
        log.exception("notice batch %s stopped", batch_id)
        raise


def _field_values(kind) -> dict:
    return {f.key: request.form.get(f.key, "") for f in kind.fields}


def _case_ids() -> list[int]:
    ids = []
    for value in request.form.getlist("case_id"):
        if not value.isdigit():
            abort(400)
        ids.append(int(value))
    return ids


# ---------------------------------------------------------------------------- office staff


@bp.route("/notices")
@login_required
def index():
    me = actor()
    with work() as w:
        service = w.notices
        kinds = [(procedure, kind, len(service.due_cases(me, kind)))
                 for procedure, catalog in service.catalogs()
                 for kind in catalog.kinds.values() if service.may_issue(me, kind)]
        notices = service.list_for(me, limit=100)
        return render_template("notices/index.html", kinds=kinds, notices=notices,
                               superseded=service.superseded_ids(notices))


def _kind_page(procedure_code: str, kind_code: str, errors: dict | None = None, values: dict | None = None,
               selected: set[int] | None = None, message: str | None = None, status: int = 200):
    me = actor()
    with work() as w:
        service = w.notices
        kind = service.kind(procedure_code, kind_code)
        region = request.values.get("region") or None
        if region and (not region.isdigit() or len(region) != 12):
            abort(400)
        cases = service.due_cases(me, kind, region_code=region)
        preselect = request.args.get("case", type=int)  # from a 出具 task page: that case (and its group) only
        if selected is None and preselect in {c.id for c in cases}:
            selected = {preselect}
        groups = service.groups(kind, cases)
        regions = w.directory.regions({g.region_code for g in groups})
        offices = {g.key: service.offices_for(kind, g.region_code) for g in groups}
        return render_template(
            "notices/kind.html", kind=kind, procedure_code=procedure_code, groups=groups, regions=regions,
            offices=offices, errors=errors or {}, values=values or {}, message=message, region=region or "",
            selected=selected if selected is not None else {c.id for c in cases},
            may_issue=service.may_issue(me, kind),
        ), status


@bp.route("/notices/<procedure_code>/<kind_code>")
@login_required
def kind_page(procedure_code: str, kind_code: str):
    return _kind_page(procedure_code, kind_code)


@bp.route("/notices/<procedure_code>/<kind_code>/issue", methods=["POST"])
@login_required
def issue(procedure_code: str, kind_code: str):
    case_ids = _case_ids()
    office = request.form.get("office_key_id") or None
    if office is not None and not office.isdigit():
        abort(400)
    with work() as w:
        kind = w.notices.kind(procedure_code, kind_code)
    values = _field_values(kind)
    try:
        with work() as w:
            notice = w.notices.issue(actor(), procedure_code, kind_code, case_ids, values,
                                       office_key_id=int(office) if office else None, client_addr=client_addr())
            serial = notice.serial
    except ValidationError as exc:
        return _kind_page(procedure_code, kind_code, exc.errors, values, set(case_ids), str(exc), 422)
    except ConflictError as exc:
        return _kind_page(procedure_code, kind_code, {}, values, set(case_ids), str(exc), 409)
    flash(f"已签发 {serial}", "success")
    return redirect(url_for("notices.show", serial=serial))


@bp.route("/notices/<procedure_code>/<kind_code>/batches", methods=["POST"])
@login_required
def create_batch(procedure_code: str, kind_code: str):
    case_ids = _case_ids()
    with work() as w:
        kind = w.notices.kind(procedure_code, kind_code)
    values = _field_values(kind)
    try:
        with work() as w:
            batch = w.notices.create_batch(actor(), procedure_code, kind_code, case_ids, values)
            batch_id = batch.id
    except ValidationError as exc:
        return _kind_page(procedure_code, kind_code, exc.errors, values, set(case_ids), str(exc), 422)
    current_app.extensions["xiangflow_notice_batches"].submit(state().factory, clock(), batch_id)
    return redirect(url_for("notices.batch", batch_id=batch_id))


@bp.route("/notices/n/<serial>")
@login_required
def show(serial: str):
    me = actor()
    with work() as w:
        service = w.notices
        notice = service.get_for(me, serial)
        return render_template(
            "notices/show.html", notice=notice, superseded_by=service.superseded_by(notice),
            supersedes=service.supersedes(notice), report=service.validate(notice),
            certificate=certificate_summary(notice.office), errors={},
            verify_url=url_for("notices.verify", serial=notice.serial, _external=True),
        )


@bp.route("/notices/n/<serial>.pdf")
@login_required
def pdf(serial: str):
    with work() as w:
        service = w.notices
        notice = service.get_for(actor(), serial)
        data = service.pdf(notice)
        name = f"{notice.serial}.pdf"
    return send_file(io.BytesIO(data), mimetype="application/pdf", download_name=name,
                     as_attachment=request.args.get("inline") != "1")


@bp.route("/notices/n/<serial>/reissue", methods=["POST"])
@login_required
def reissue(serial: str):
    try:
        with work() as w:
            notice = w.notices.reissue(actor(), serial, request.form.get("reason", ""), client_addr=client_addr())
            new_serial = notice.serial
    except (ValidationError, ConflictError) as exc:
        detail = "".join(getattr(exc, "errors", {}).values())
        flash(f"未能重新签发:{exc}{(':' + detail) if detail else ''}", "error")
        return redirect(url_for("notices.show", serial=serial))
    flash(f"已重新签发 {new_serial},原编号 {serial} 已作废(被取代)", "success")
    return redirect(url_for("notices.show", serial=new_serial))


@bp.route("/notices/cases/<int:case_id>")
@login_required
def case_notices(case_id: int):
    me = actor()
    with work() as w:
        case = w.access.visible_case(case_id, me)
        service = w.notices
        notices = service.case_notices(case_id)
        catalog = service.catalog(case.version.procedure.code)
        return render_template("notices/case.html", case=case, notices=notices,
                               superseded=service.superseded_ids(notices),
                               kinds=[k for k in (catalog.kinds.values() if catalog else [])
                                      if service.may_issue(me, k)])


@bp.route("/notices/batches/<int:batch_id>")
@login_required
def batch(batch_id: int):
    with work() as w:
        service = w.notices
        item = service.get_batch(actor(), batch_id)
        kind = service.kind(item.procedure_code, item.kind)
        return render_template("notices/batch.html", batch=item, kind=kind, status_labels=BATCH_STATUS_LABELS)


@bp.route("/notices/batches/<int:batch_id>/progress")
@login_required
def batch_progress(batch_id: int):
    with work() as w:
        service = w.notices
        item = service.get_batch(actor(), batch_id)
        finished = item.status in (NoticeBatchStatus.done, NoticeBatchStatus.failed)
        serials = [n.serial for n in service.batch_notices(item)] if finished else []
        return jsonify({
            "id": item.id, "status": item.status.value, "status_label": BATCH_STATUS_LABELS[item.status.value],
            "total": item.total, "done": item.done_count, "failed": item.failed_count,
            "percent": round(100 * (item.done_count + item.failed_count) / item.total) if item.total else 100,
            "errors": item.errors or [], "finished": finished, "serials": serials,
            "zip_url": url_for("notices.batch_download", batch_id=item.id, format="zip") if finished else None,
            "pdf_url": url_for("notices.batch_download", batch_id=item.id, format="pdf") if finished else None,
        })


@bp.route("/notices/batches/<int:batch_id>/download")
@login_required
def batch_download(batch_id: int):
    fmt = request.args.get("format", "zip")
    if fmt not in ("zip", "pdf"):
        abort(400)
    with work() as w:
        service = w.notices
        item = service.get_batch(actor(), batch_id)
        if item.status not in (NoticeBatchStatus.done, NoticeBatchStatus.failed):
            abort(409)
        notices = service.batch_notices(item, with_pdf=True)
        if not notices:
            abort(404)
        if fmt == "pdf":
            return send_file(io.BytesIO(merge_pdfs(notices)), mimetype="application/pdf",
                             download_name=f"notices-batch-{batch_id}.pdf", as_attachment=True)
        archive = tempfile.TemporaryFile()  # a thousand notices make a zip of a few hundred MB: not in memory
        write_zip(notices, archive)
    archive.seek(0)
    response = send_file(archive, mimetype="application/zip", download_name=f"notices-batch-{batch_id}.zip",
                         as_attachment=True)
    response.call_on_close(archive.close)
    return response


# ---------------------------------------------------------------------------- public verification


@bp.route("/verify", methods=["GET"])
def verify_start():
    serial = (request.args.get("serial") or "").strip().upper()
    if serial:
        return redirect(url_for("notices.verify", serial=serial))
    return render_template("notices/verify_start.html")


def _verify_page(serial: str, check=None, error: str | None = None, status: int = 200):
    with work() as w:
        service = w.notices
        notice = service.get_public(serial)
        return render_template("notices/verify.html", notice=notice, superseded_by=service.superseded_by(notice),
                               check=check, error=error,
                               region=w.directory.region(notice.region_code)), status


@bp.route("/verify/<serial>", methods=["GET"])
def verify(serial: str):
    return _verify_page(serial)


@bp.route("/verify/<serial>", methods=["POST"])
def verify_upload(serial: str):
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _verify_page(serial, error="请选择要核验的 PDF 文件", status=422)
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _verify_page(serial, error="文件过大", status=413)
    with work() as w:
        check = w.notices.check_upload(serial, data)
        return _verify_page(serial, check=check)


# ---------------------------------------------------------------------------- CLI


def register_cli(app: Flask) -> None:
    @app.cli.group("notices")
    def notices():
        """Signed notices: office keys and certificates, batch printing."""

    @notices.command("keygen")
    @click.option("--office", "offices", multiple=True, metavar="REGION/OFFICE",
                  help="e.g. 510921107000/宝梵镇人民政府 (repeatable)")
    @click.option("--validity-days", default=1825, show_default=True)
    def keygen(offices: tuple[str, ...], validity_days: int):
        """Make an office key and a certificate from the deployment's self-made CA (demo and test only)."""
        if not offices:
            raise click.UsageError("请用 --office 区划代码/单位名称 指定单位")
        try:
            with work() as w:
                keys = w.keys
                for text in offices:
                    region_code, name = parse_office(text)
                    key = keys.keygen(region_code, name, validity_days=validity_days)
                    click.echo(f"{key.office_code}: 证书 SHA-256 {key.cert_sha256},有效期至 "
                               f"{key.not_after:%Y-%m-%d}")
                if not keys.passphrase:
                    click.echo(f"注意:未设置 {PASSPHRASE_ENV},私钥未加密保存(仅限演示和测试)")
        except ValidationError as exc:
            raise click.ClickException(_message(exc)) from exc

    @notices.command("import-cert")
    @click.option("--office", required=True, metavar="REGION/OFFICE")
    @click.option("--pkcs12", "pkcs12_file", type=click.File("rb"), help="PKCS#12 (.p12/.pfx) with key and chain")
    @click.option("--key", "key_file", type=click.File("rb"), help="PEM private key")
    @click.option("--cert", "cert_file", type=click.File("rb"), help="PEM certificate")
    @click.option("--chain", "chain_file", type=click.File("rb"), help="PEM issuer certificates")
    @click.option("--password-env", default=None, metavar="VAR", help="environment variable holding the password")
    @click.option("--trust-root", is_flag=True, help="trust the chain's self-signed root when validating")
    def import_cert(office, pkcs12_file, key_file, cert_file, chain_file, password_env, trust_root):
        """Import an office's real certificate and key; its previous key is retired."""
        password = os.environ.get(password_env, "").encode("utf-8") if password_env else None
        region_code, name = _parse_or_fail(office)
        try:
            with work() as w:
                keys = w.keys
                if pkcs12_file is not None:
                    key = keys.import_pkcs12(region_code, name, pkcs12_file.read(), password or None, trust_root)
                elif key_file is not None and cert_file is not None:
                    key = keys.import_pem(region_code, name, key_file.read(), cert_file.read(),
                                          chain_file.read() if chain_file else b"", password or None, trust_root)
                else:
                    raise click.UsageError("请给出 --pkcs12,或 --key 与 --cert")
                click.echo(f"{key.office_code}: 已导入 {key.subject},SHA-256 {key.cert_sha256}")
        except ValidationError as exc:
            raise click.ClickException(_message(exc)) from exc

    @notices.command("keys")
    def list_keys():
        """List the offices' active certificates."""
        with work() as w:
            for key in w.keys.active_keys():
                click.echo(f"{key.office_code}\t{key.source}\t{key.not_after:%Y-%m-%d}\t{key.cert_sha256}")

    @notices.command("ca-cert")
    def ca_cert():
        """Print the self-made CA certificate (PEM), to trust it in pdfsig's NSS database or a PDF reader."""
        try:
            with work() as w:
                click.echo(w.keys.demo_ca().cert_pem, nl=False)
        except ValidationError as exc:
            raise click.ClickException(_message(exc)) from exc

    @notices.command("batch")
    @click.option("--procedure", default="monitoring_exit", show_default=True)
    @click.option("--kind", "kind_code", required=True, help="e.g. village_public_notice, exit_notice")
    @click.option("--region", default=None, help="only cases inside this region code (e.g. a township)")
    @click.option("--user", "username", required=True, help="the issuing user (permissions and history)")
    @click.option("--field", "fields", multiple=True, metavar="KEY=VALUE", help="a field of the notice")
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True),
                  help="output file: .zip (signed PDFs) or .pdf (merged for printing)")
    def batch(procedure, kind_code, region, username, fields, out_path):
        """Issue the due notices of a kind for the cases in a region, with a progress bar."""
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        try:
            with work() as w:
                user = w.directory.user_by_username(username)
                if user is None:
                    raise click.ClickException(f"用户 {username} 不存在")
                me = w.directory.actor(user)
                service = w.notices
                kind = service.kind(procedure, kind_code)
                cases = service.due_cases(me, kind, region_code=region)
                if not cases:
                    click.echo("没有需要出具的公文")
                    return
                batch_id = service.create_batch(me, procedure, kind_code, [c.id for c in cases], values).id
        except XiangFlowError as exc:
            raise click.ClickException(_message(exc)) from exc
        with click.progressbar(length=1, label=f"签发{kind.name}", show_pos=True) as bar:
            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            status = run_batch(state().factory, clock(), batch_id, progress=progress)
        with work() as w:
            service = w.notices
            item = service.get_batch(me, batch_id)
            notices = service.batch_notices(item, with_pdf=True)
            with open(out_path, "wb") as out:
                if out_path.lower().endswith(".pdf"):
                    out.write(merge_pdfs(notices))
                else:
                    write_zip(notices, out)
            for error in item.errors or []:
                click.echo(f"失败 {error.get('group')}: {error.get('message')}", err=True)
        click.echo(f"{status.value if status else '?'}: {len(notices)} 份已签发,写入 {out_path}")

    @notices.command("work")
    def work_batches():
        """Run queued batches (and batches whose worker stopped), then exit."""
        ran = run_queued_batches(state().factory, clock())
        click.echo(f"ran {ran}")


def _parse_or_fail(text: str) -> tuple[str, str]:
    try:
        return parse_office(text)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc


def _message(exc: XiangFlowError) -> str:
    detail = ";".join(getattr(exc, "errors", {}).values())
    return f"{exc}{(':' + detail) if detail else ''}"
