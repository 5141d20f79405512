"""批量发起 (issue 12 part 7): choose subjects by the registry's filters or an uploaded ID list, start one
procedure for all of them as a background job with progress; duplicates skipped and named, a subject that
cannot start leaves nothing, every outcome in Chinese."""

from __future__ import annotations

import io
import re

from openpyxl import Workbook
from sqlalchemy import func, select

from engine.models import Case, Subject
from engine.models.registry import StartBatch
from engine.registry.batch_starts import run_start_batch


def _households(db, username: str = "demo_village") -> list[tuple[int, str, str]]:
    actor = db.actor(username)
    with db.uow() as work:
        return [(s.id, s.name, s.id_number) for s in work.session.scalars(
            select(Subject).where(Subject.kind == "household", Subject.is_active.is_(True)).order_by(Subject.id))
            if actor.covers(s.region_code)]


def _run(app, batch_id: int) -> str:
    return app.extensions["xiangflow_start_batches"].wait(batch_id, timeout=120)


def test_a_village_starts_exit_checks_for_its_households_and_watches_the_progress(db, app, client_for, csrf_token):
    households = _households(db)
    running = db.start_case("demo_village", subject_id=households[0][0])  # this one is skipped, naming its case
    village = client_for("demo_village")
    preview = village.get("/cases/batch-start/?preview=1&procedure=monitoring_exit")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and page.count('data-testid="batch-subject"') == len(households)
    token = csrf_token(village, "/cases/batch-start/")
    chosen = [str(h[0]) for h in households]
    response = village.post("/cases/batch-start/", data={"csrf_token": token, "procedure": "monitoring_exit",
                                                         "subject_id": chosen})
    assert response.status_code == 302
    batch_id = int(re.search(r"/cases/batch-start/(\d+)", response.headers["Location"]).group(1))
    assert _run(app, batch_id) == "done"
    progress = village.get(f"/cases/batch-start/{batch_id}/progress").get_json()
    assert progress["finished"] and progress["percent"] == 100 and progress["total"] == len(households)
    assert progress["started"] == len(households) - 1 and progress["skipped"] == 1 and progress["failed"] == 0
    (skipped,) = [r for r in progress["results"] if r["outcome"] == "skipped"]
    assert skipped["case_id"] == running and f"编号 {running}" in skipped["message"]
    assert skipped["outcome_label"] == "已跳过"
    started = [r["case_id"] for r in progress["results"] if r["outcome"] == "started"]
    with db.uow() as work:
        assert work.session.scalar(select(func.count(Case.id)).where(Case.id.in_(started))) == len(started)
    shown = village.get(f"/cases/batch-start/{batch_id}").get_data(as_text=True)
    assert "已完成 100%" in shown and "已跳过" in shown
    # someone else's batch is not found
    assert client_for("demo_other_village").get(f"/cases/batch-start/{batch_id}/progress").status_code == 404
    # running it again starts nothing more
    assert _run_again(db, batch_id) == "done"
    with db.uow() as work:
        assert work.session.get(StartBatch, batch_id).started_count == len(households) - 1


def _run_again(db, batch_id: int) -> str:
    return run_start_batch(db.uow, batch_id)


def test_a_subject_that_cannot_start_is_reported_and_leaves_nothing_while_the_others_start(db, client_for):
    households = _households(db)
    village = client_for("demo_village")
    with db.uow() as work:
        batch = work.batch_starts.create(db.actor("demo_village"), "monitoring_exit", [h[0] for h in households[:3]])
        batch_id = batch.id
        work.session.get(Subject, households[1][0]).is_active = False  # deactivated after it was chosen
    before = _case_count(db)
    assert run_start_batch(db.uow, batch_id) == "done"
    progress = village.get(f"/cases/batch-start/{batch_id}/progress").get_json()
    outcomes = {r["subject_id"]: r for r in progress["results"]}
    assert outcomes[households[1][0]]["outcome"] == "failed" and "已停用" in outcomes[households[1][0]]["message"]
    assert [outcomes[h[0]]["outcome"] for h in (households[0], households[2])] == ["started", "started"]
    assert _case_count(db) == before + 2


def _case_count(db) -> int:
    with db.uow() as work:
        return work.session.scalar(select(func.count(Case.id)))


def test_an_uploaded_id_list_chooses_the_subjects_and_a_bad_line_is_named(db, client_for, csrf_token):
    households = _households(db)
    village = client_for("demo_village")
    token = csrf_token(village, "/cases/batch-start/")
    book = Workbook()
    sheet = book.active
    sheet.append(["身份证号"])
    for _id, _name, number in households[:2]:
        sheet.append([number])
    data = io.BytesIO()
    book.save(data)
    response = village.post("/cases/batch-start/list", data={
        "csrf_token": token, "procedure": "monitoring_exit", "file": (io.BytesIO(data.getvalue()), "名单.xlsx")},
        content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and page.count('data-testid="batch-subject"') == 2
    assert households[0][1] in page and households[1][1] in page
    bad = village.post("/cases/batch-start/list", data={
        "csrf_token": token, "procedure": "monitoring_exit",
        "file": (io.BytesIO(f"{households[0][2]}\n110101199003070000\n".encode()), "名单.csv")},
        content_type="multipart/form-data")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "第 2 行 110101199003070000" in text and 'data-testid="batch-subject"' not in text
    wrong = village.post("/cases/batch-start/list", data={
        "csrf_token": token, "procedure": "monitoring_exit", "file": (io.BytesIO(b"x"), "名单.pdf")},
        content_type="multipart/form-data")
    assert wrong.status_code == 422 and "请上传 .xlsx、.csv 或 .txt 文件" in wrong.get_data(as_text=True)


def test_a_batch_of_subjects_outside_the_jurisdiction_or_of_the_wrong_kind_is_refused(db, client_for, csrf_token):
    village = client_for("demo_village")
    token = csrf_token(village, "/cases/batch-start/")
    other = _households(db, "demo_other_village")[0][0]
    for data, message in (({"subject_id": [str(other)]}, "不在您的辖区"), ({"subject_id": []}, "请选择 1 到"),
                          ({"subject_id": ["abc"]}, "所选对象编号无效")):
        response = village.post("/cases/batch-start/", data={"csrf_token": token, "procedure": "monitoring_exit",
                                                             **data})
        assert response.status_code == 422 and message in response.get_data(as_text=True), data
    with db.uow() as work:
        assert work.session.scalar(select(func.count(StartBatch.id))) == 0
    with db.uow() as work:
        project = work.session.scalar(select(Subject.id).where(Subject.kind == "project"))
    response = village.post("/cases/batch-start/", data={"csrf_token": token, "procedure": "monitoring_exit",
                                                         "subject_id": [str(project)]})
    assert response.status_code == 422 and "不是此流程适用的对象" in response.get_data(as_text=True)
