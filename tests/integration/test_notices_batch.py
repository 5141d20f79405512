"""Batch printing: office staff select the due cases of several villages and get one signed notice per
village, made by a background job whose progress the page polls; one merged PDF or a zip of the signed
originals; the same from the command line with a progress bar; an interrupted batch resumes."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

from notices_support import (
    PHONES,
    TOWNSHIP,
    VILLAGE,
    VILLAGE_2,
    VILLAGE_3,
    add_household,
    case_at,
    ensure_office_keys,
    multi_village_cadre,
)
from pypdf import PdfReader
from sqlalchemy import func, select

from engine.models import IssuedNotice, NoticeBatch, NoticeBatchStatus
from engine.notices.batches import run_batch
from engine.notices.pki import KeyStore
from engine.notices.verify import validate_signature

KIND_PAGE = "/notices/monitoring_exit/village_public_notice"


def _cases_in_three_villages(db) -> list[int]:
    ensure_office_keys(db)
    cadre = multi_village_cadre(db)
    ids = []
    for n, village in enumerate((VILLAGE, VILLAGE_2, VILLAGE_3)):
        for k in range(2):
            subject = add_household(db, f"{'赵钱孙'[n]}{'甲乙'[k]}明", village, 10 * n + k + 1)
            ids.append(case_at(db, subject, "village_notice", starter=cadre))
    return ids


def test_a_batch_for_three_villages_runs_in_the_background_and_offers_a_merged_pdf_and_a_zip(
        db, app, client_for, csrf_token):
    case_ids = _cases_in_three_villages(db)
    clerk = client_for("demo_clerk")
    page = clerk.get(KIND_PAGE).get_data(as_text=True)
    assert page.count('name="case_id"') == 6 and "莲花社区居民委员会" in page

    token = csrf_token(clerk, KIND_PAGE)
    response = clerk.post(f"{KIND_PAGE}/batches", data={"csrf_token": token, "case_id": [str(i) for i in case_ids],
                                                        **PHONES})
    assert response.status_code == 302
    batch_url = response.headers["Location"]
    batch_id = int(batch_url.rsplit("/", 1)[1])
    batch_page = clerk.get(batch_url).get_data(as_text=True)
    assert 'id="batch-progress"' in batch_page and "/progress" in batch_page

    assert app.extensions["xiangflow_notice_batches"].wait(batch_id, timeout=300) == NoticeBatchStatus.done
    progress = clerk.get(f"{batch_url}/progress").get_json()
    assert progress["status"] == "done" and progress["finished"]
    assert (progress["total"], progress["done"], progress["failed"], progress["percent"]) == (3, 3, 0, 100)
    assert len(progress["serials"]) == 3 and progress["zip_url"] and progress["pdf_url"]

    with db.uow() as work:
        notices = work.session.scalars(select(IssuedNotice).where(IssuedNotice.batch_id == batch_id)
                                       .order_by(IssuedNotice.id)).all()
        assert sorted(n.office_name for n in notices) == ["冬笋街社区居民委员会", "莲花社区居民委员会", "跃进村民委员会"]
        assert all(len(n.covers) == 2 for n in notices)
        hashes = {n.sha256 for n in notices}
        pages = sum(n.page_count for n in notices)
        roots = KeyStore(work.session, db.clock).trust_roots()

    with clerk.get(progress["zip_url"]) as download:  # a streamed file: close the response as a server would
        assert download.mimetype == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(download.data))
    pdfs = [name for name in archive.namelist() if name.endswith(".pdf")]
    assert len(pdfs) == 3
    for name in pdfs:
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() in hashes
        assert validate_signature(data, roots).ok
    listing = list(csv.reader(io.StringIO(archive.read("清单.csv").decode("utf-8-sig"))))
    assert listing[0][0] == "编号" and {row[5] for row in listing[1:]} == hashes

    with clerk.get(progress["pdf_url"]) as merged:
        assert merged.mimetype == "application/pdf"
        reader = PdfReader(io.BytesIO(merged.data))
    assert len(reader.pages) == pages
    assert all(serial in "".join(p.extract_text() for p in reader.pages) for serial in progress["serials"])

    assert client_for("demo_township").get(f"{batch_url}/progress").status_code == 404  # someone else's batch


def test_a_batch_with_a_village_lacking_an_office_key_is_refused_before_it_starts(db, client_for, csrf_token):
    case_ids = _cases_in_three_villages(db)
    with db.uow() as work:
        for key in KeyStore(work.session, db.clock).active_keys():
            if key.region_code == VILLAGE_3:
                key.retired_at = db.clock.now()
    clerk = client_for("demo_clerk")
    token = csrf_token(clerk, KIND_PAGE)
    response = clerk.post(f"{KIND_PAGE}/batches", data={"csrf_token": token, "case_id": [str(i) for i in case_ids],
                                                        **PHONES})
    assert response.status_code == 422 and "尚无签章证书" in response.get_data(as_text=True)
    with db.uow() as work:
        assert work.session.scalar(select(func.count(NoticeBatch.id))) == 0


def test_an_interrupted_batch_resumes_without_issuing_a_village_twice(db):
    case_ids = _cases_in_three_villages(db)
    clerk = db.actor("demo_clerk")
    with db.uow() as work:
        service = work.notices
        batch = service.create_batch(clerk, "monitoring_exit", "village_public_notice", case_ids, PHONES)
        batch_id = batch.id
        first_village = case_ids[:2]
        service.issue(clerk, "monitoring_exit", "village_public_notice", first_village, PHONES,
                      batch_id=batch_id, group_key=f"village:{VILLAGE}")
    seen = []
    assert run_batch(db.factory, db.clock, batch_id, progress=lambda done, total: seen.append((done, total))) \
        == NoticeBatchStatus.done
    assert seen[0] == (1, 3) and seen[-1] == (3, 3)
    assert run_batch(db.factory, db.clock, batch_id) is None  # finished: nothing to claim
    with db.uow() as work:
        assert work.session.scalar(select(func.count(IssuedNotice.id)).where(IssuedNotice.batch_id == batch_id)) == 3
        assert work.session.get(NoticeBatch, batch_id).done_count == 3


def test_the_cli_makes_office_keys_and_prints_a_batch_with_a_progress_bar(db, app, tmp_path):
    ensure_office_keys(db)
    for name in ("张德明", "李秀英"):
        case_at(db, db.household(name), "village_notice")
    runner = app.test_cli_runner()

    made = runner.invoke(args=["notices", "keygen", "--office", f"{TOWNSHIP}/宝梵镇财政所"])
    assert made.exit_code == 0, made.output
    assert f"{TOWNSHIP}/宝梵镇财政所: 证书 SHA-256" in made.output
    bad = runner.invoke(args=["notices", "keygen", "--office", "宝梵镇"])
    assert bad.exit_code != 0 and "区划代码" in bad.output
    assert "BEGIN CERTIFICATE" in runner.invoke(args=["notices", "ca-cert"]).output

    out = tmp_path / "notices.zip"
    result = runner.invoke(args=["notices", "batch", "--kind", "village_public_notice", "--region", TOWNSHIP,
                                 "--user", "demo_clerk", "--field", "contact_phone=0825-5421234",
                                 "--field", "complaint_phone=0825-5420000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "签发村级公示" in result.output  # click draws the bar itself only on a terminal
    assert "done: 1 份已签发" in result.output
    with zipfile.ZipFile(out) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".pdf")]) == 1

    again = runner.invoke(args=["notices", "batch", "--kind", "village_public_notice", "--region", TOWNSHIP,
                                "--user", "demo_clerk", "--out", str(tmp_path / "none.pdf")])
    assert again.exit_code == 0 and "没有需要出具的公文" in again.output


def test_a_batch_including_cases_that_already_have_a_current_notice_is_refused(db, client_for, csrf_token):
    from notices_support import issue

    case_ids = _cases_in_three_villages(db)
    serial, _pdf = issue(db, "demo_clerk", "village_public_notice", case_ids[:2], PHONES)
    clerk = client_for("demo_clerk")
    assert clerk.get(KIND_PAGE).get_data(as_text=True).count('name="case_id"') == 4  # covered cases are not due
    token = csrf_token(clerk, KIND_PAGE)
    response = clerk.post(f"{KIND_PAGE}/batches", data={"csrf_token": token, "case_id": [str(i) for i in case_ids],
                                                        **PHONES})
    assert response.status_code == 422 and serial in response.get_data(as_text=True)
    with db.uow() as work:
        assert work.session.scalar(select(func.count(NoticeBatch.id))) == 0
