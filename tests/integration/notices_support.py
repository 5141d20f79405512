"""Helpers for the signed-notice tests: office keys, households in several villages, PDF inspection,
poppler's pdfsig with and without an NSS database that trusts the self-made CA."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

from pypdf import PdfReader
from pypdf.generic import ContentStream
from sqlalchemy import select

from engine import demo_data as D
from engine.models import IssuedNotice, NoticeAuthority, OfficeKey, Subject, User
from engine.notices.pki import SOURCE_DEMO, KeyStore, office_code
from engine.procedures.forms import valid_cn_id
from tests.integration.dates_support import dated

VILLAGE = "510921107001"  # 冬笋街社区 (demo_village's village)
VILLAGE_2 = "510921107003"  # 莲花社区
VILLAGE_3 = "510921107200"  # 跃进村
TOWNSHIP = "510921107000"  # 宝梵镇
COUNTY = "510921000000"  # 蓬溪县
OFFICES = {
    VILLAGE: "冬笋街社区居民委员会",
    VILLAGE_2: "莲花社区居民委员会",
    VILLAGE_3: "跃进村民委员会",
    TOWNSHIP: "宝梵镇人民政府",
    COUNTY: "蓬溪县乡村振兴局",
}
PHONES = {"contact_phone": "0825-5421234", "complaint_phone": "0825-5420000"}
MM = 72 / 25.4


# office code → the columns of the key made for it earlier in this session: making one (an RSA key and a
# certificate from the demo CA) costs a fifth of a second, and most notice tests need all five offices
_MADE: dict[str, dict] = {}
_KEY_COLUMNS = ("office_code", "region_code", "office_name", "source", "authority_id", "subject", "cert_pem",
                "chain_pem", "trust_root_pem", "key_pem", "key_encrypted", "cert_sha256", "not_before", "not_after")


def _made_before(session, code: str, now) -> OfficeKey | None:
    """The key made for office code earlier in the session, stored again — if this database's demo CA is the
    one that certified it, the certificate is valid now and this database does not hold it already."""
    made = _MADE.get(code)
    if made is None or not made["not_before"] <= now < made["not_after"]:
        return None
    authority = session.get(NoticeAuthority, made["authority_id"]) if made["authority_id"] else None
    if authority is None or authority.cert_pem.strip() not in made["chain_pem"]:
        return None
    if session.scalar(select(OfficeKey.id).where(OfficeKey.cert_sha256 == made["cert_sha256"])) is not None:
        return None
    key = OfficeKey(**made, created_at=now)
    session.add(key)
    session.flush()
    return key


def ensure_office_keys(db) -> dict[str, int]:
    """An active key for each test office (PostgreSQL keeps office keys across tests: reuse them). A key
    made in an earlier test of the session is stored again rather than made anew."""
    ids = {}
    with db.uow() as work:
        keys = KeyStore(work.session, db.clock)
        for region, name in OFFICES.items():
            code = office_code(region, name)
            key = keys.active(code) or _made_before(work.session, code, db.clock.now()) or keys.keygen(region, name)
            if key.source == SOURCE_DEMO:
                _MADE.setdefault(code, {column: getattr(key, column) for column in _KEY_COLUMNS})
            ids[region] = key.id
    return ids


def ca_pem(db) -> str:
    with db.uow() as work:
        return work.session.scalar(select(NoticeAuthority.cert_pem).order_by(NoticeAuthority.id).limit(1))


def id_number(region6: str, birth: str, seq: int) -> str:
    """A resident ID number with a valid check digit."""
    body = f"{region6}{birth}{seq:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    number = body + check
    assert valid_cn_id(number)
    return number


def add_household(db, name: str, region: str, seq: int, members: int = 3, category: str = "脱贫不稳定户") -> int:
    with db.uow() as work:
        subject = Subject(kind="household", region_code=region, name=name,
                          id_number=id_number("510921", "19700101", seq),
                          attrs={"members": members, "category": category})
        work.session.add(subject)
        work.session.flush()
        return subject.id


def multi_village_cadre(db, username: str = "notice_cadre") -> str:
    """A village cadre of the three test villages (so cases can start in each)."""
    with db.uow() as work:
        if work.session.scalar(select(User).where(User.username == username)) is None:
            work.directory.create_user(username, "多村工作专班(测试)", "demo12345",
                                       [("village_cadre", v) for v in (VILLAGE, VILLAGE_2, VILLAGE_3)])
    return username


STAGES = ("village_notice", "county_notice", "exit_notice", "exited")


def case_at(db, subject_id: int, stage: str, starter: str = "demo_village") -> int:
    """Start an exit case and take it to a stage of the 四步法:

    ``village_notice`` — 民主评议 done, 出具村级公示 open (its notice is due); ``county_notice`` — 县级公告
    done, 出具县级公告 open; ``exit_notice`` — the 退出告知 step is open; ``exited``.
    Passing a period issues this case's notice, moves the shared clock a week and fires every due timer,
    so make cases of later stages first. Each step's dates are the day it is done (``dated``).
    """
    assert stage in STAGES, stage
    with db.uow() as work:
        case_id = work.cases.start_case("monitoring_exit", subject_id, db.actor(starter)).id
    db.complete(case_id, starter, opinion="情况属实,同意。", data=dated(db, D.HOUSEHOLD_CHECK))
    db.complete(case_id, starter, opinion="评议通过。", data=dated(db, D.VILLAGE_REVIEW))
    if stage == "village_notice":
        return case_id
    db.pass_notice(case_id=case_id)
    for who, data in D.REVIEW_STEPS[1:]:
        db.complete(case_id, who, opinion="情况属实,同意。", data=dated(db, data))
    if stage == "county_notice":
        return case_id
    db.pass_notice(case_id=case_id)
    if stage == "exit_notice":
        return case_id
    issue_step_notice(db, case_id, starter)
    db.complete(case_id, starter, opinion="已送达告知书。", data=dated(db, D.EXIT_NOTICE))
    return case_id


def exit_notice_case(db) -> int:
    """刘桂芳's exit case at 退出告知 (two signed notices on the way), the offices' keys made: a snapshot_db build."""
    ensure_office_keys(db)
    return case_at(db, db.household("刘桂芳"), "exit_notice")


def issue_step_notice(db, case_id: int, username: str = "demo_village") -> str | None:
    """Issue the notice the case's open step must hand over before it is approved (step property
    ``requiresNotice``: the 退出告知书 at 退出告知), as the step's holder does from the task page's prompt;
    its serial, or None when the open step needs none."""
    (row,) = db.open_tasks(case_id)
    with db.uow() as work:
        kind = work.cases.step_properties(row).get("requiresNotice")
    if not kind:
        return None
    ensure_office_keys(db)
    serial, _pdf = issue(db, username, kind, [case_id], D.NOTICE_FIELDS.get(kind))
    return serial


def complete_exit_notice(db, case_id: int, username: str = "demo_village", **kwargs) -> str:
    """退出告知 as the village does it: issue the 退出告知书, then complete the step; the notice's serial."""
    serial = issue_step_notice(db, case_id, username)
    assert serial is not None, "the open step is not 退出告知"
    db.complete(case_id, username, data=dated(db, D.EXIT_NOTICE), **kwargs)
    return serial


def today(db) -> str:
    """The date the notices issued now carry, as GB/T 9704 writes it."""
    from engine.notices.formatting import cn_date

    return cn_date(db.clock.now())


def issue(db, username: str, kind: str, case_ids: list[int], values: dict | None = None,
          procedure: str = "monitoring_exit", **kwargs) -> tuple[str, bytes]:
    """Issue a notice of procedure through the engine; return its serial and PDF."""
    with db.uow() as work:
        service = work.notices
        notice = service.issue(db.actor(username), procedure, kind, case_ids, values, **kwargs)
        return notice.serial, service.pdf(notice)


def stored(db, serial: str) -> IssuedNotice:
    with db.uow() as work:
        return work.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == serial))


# ---------------------------------------------------------------------------- PDF inspection


def fonts(pdf: bytes) -> list[dict]:
    """Every font the pages use: name, subtype, whether its program is embedded."""
    out = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for ref in (page["/Resources"].get("/Font") or {}).values():
            font = ref.get_object()
            descendant = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            descriptor = descendant.get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor else {}
            encoding = font.get("/Encoding")
            encoding = encoding if isinstance(encoding, str) else f"CMap {encoding.get_object().get('/CMapName')}"
            out[str(font["/BaseFont"])] = {
                "base_font": str(font["/BaseFont"]), "subtype": str(font["/Subtype"]), "encoding": str(encoding),
                "embedded": any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")),
            }
    return list(out.values())


def _code_to_cid(font) -> dict[bytes, int] | None:
    """The 2-byte code → CID map of a Type0 font's encoding (None: Identity-H, code = CID)."""
    encoding = font.get("/Encoding")
    if str(encoding) == "/Identity-H":
        return None
    cmap = encoding.get_object().get_data().decode("latin-1")
    mapping: dict[bytes, int] = {}
    for block in re.findall(r"begincidchar(.*?)endcidchar", cmap, re.S):
        for code, cid in re.findall(r"<([0-9a-fA-F]+)>\s+(\d+)", block):
            mapping[bytes.fromhex(code)] = int(cid)
    for block in re.findall(r"begincidrange(.*?)endcidrange", cmap, re.S):
        for low, high, cid in re.findall(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s+(\d+)", block):
            for offset in range(int(high, 16) - int(low, 16) + 1):
                mapping[(int(low, 16) + offset).to_bytes(2, "big")] = int(cid) + offset
    return mapping


def notdef_glyphs(pdf: bytes) -> int:
    """How many shown glyphs are CID 0 (.notdef), over all pages (Type0 fonts, 2-byte codes)."""
    reader = PdfReader(io.BytesIO(pdf))
    count = 0
    for page in reader.pages:
        font_dicts = {name: ref.get_object() for name, ref in (page["/Resources"].get("/Font") or {}).items()}
        maps = {name: _code_to_cid(font) for name, font in font_dicts.items()}
        content = ContentStream(page.get_contents(), reader)
        current = None
        for operands, operator in content.operations:
            if operator == b"Tf":
                current = operands[0]
                assert str(font_dicts[current]["/Subtype"]) == "/Type0"
            elif operator in (b"Tj", b"'", b'"', b"TJ") and current is not None:
                strings = operands[0] if operator == b"TJ" else [operands[-1]]
                for item in strings:
                    if hasattr(item, "original_bytes"):
                        raw = item.original_bytes
                    elif isinstance(item, bytes):
                        raw = bytes(item)
                    else:
                        continue  # a kerning number in a TJ array
                    for i in range(0, len(raw) - 1, 2):
                        code = raw[i:i + 2]
                        cid = int.from_bytes(code, "big") if maps[current] is None else maps[current].get(code)
                        count += cid == 0
    return count


def text_lines(page, size: float, tolerance: float = 0.3) -> list[list[dict]]:
    """pdfplumber chars of one font size grouped into lines (top to bottom, left to right)."""
    chars = [c for c in page.chars if abs(c["size"] - size) < tolerance and c["text"].strip()]
    lines: dict[float, list[dict]] = {}
    for c in chars:
        key = next((k for k in lines if abs(k - c["top"]) < 2), c["top"])
        lines.setdefault(key, []).append(c)
    return [sorted(v, key=lambda c: c["x0"]) for _, v in sorted(lines.items())]


def signature_page(pdf: bytes) -> tuple[int, list[float]]:
    """The page index and rectangle of the signature widget."""
    for index, page in enumerate(PdfReader(io.BytesIO(pdf)).pages):
        for annot in page.get("/Annots") or []:
            annot = annot.get_object()
            field = annot.get("/Parent", annot)
            field = field.get_object() if hasattr(field, "get_object") else field
            if annot.get("/Subtype") == "/Widget" and field.get("/FT") == "/Sig":
                return index, [float(v) for v in annot["/Rect"]]
    raise AssertionError("no signature widget")


def flip_one_byte(pdf: bytes) -> bytes:
    """Change one byte inside the signed range: the first content stream's data."""
    data = bytearray(pdf)
    start = data.index(b"stream\n") + len(b"stream\n") + 20
    data[start] ^= 0x01
    return bytes(data)


# ---------------------------------------------------------------------------- poppler


def pdfsig(pdf: bytes, tmp_path: Path, nssdir: Path | None = None) -> str:
    exe = shutil.which("pdfsig")
    assert exe, "pdfsig (Debian poppler-utils) is not installed: run make system-deps"
    path = tmp_path / f"check-{len(list(tmp_path.iterdir()))}.pdf"
    path.write_bytes(pdf)
    cmd = [exe, *(["-nssdir", f"sql:{nssdir}"] if nssdir else []), str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def nss_db_trusting(ca: str, tmp_path: Path) -> Path:
    """An NSS database (certutil, Debian libnss3-tools) in which the self-made CA is a trusted root."""
    certutil = shutil.which("certutil")
    assert certutil, "certutil (Debian libnss3-tools) is not installed: run make system-deps"
    nssdir = tmp_path / "nssdb"
    nssdir.mkdir()
    (tmp_path / "ca.pem").write_text(ca)
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdir}", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{nssdir}", "-n", "xiangflow-demo-ca", "-t", "CT,C,C",
                    "-i", str(tmp_path / "ca.pem")], check=True, capture_output=True)
    return nssdir


def pdfsig_verdict(output: str) -> tuple[str | None, str | None]:
    signature = re.search(r"Signature Validation: (.+)", output)
    certificate = re.search(r"Certificate Validation: (.+)", output)
    return (signature.group(1).strip() if signature else None, certificate.group(1).strip() if certificate else None)
