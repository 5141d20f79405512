"""Checking a notice: pyHanko's verdict on a PDF's signature, and an uploaded file against the issued one."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from engine.models import IssuedNotice
from engine.notices.sign import outside_event_loop


@dataclass(frozen=True)
class SignatureReport:
    """What pyHanko's validator says about a PDF's signature."""

    present: bool
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    entire_file: bool = False
    signer: str = ""
    signing_time: datetime | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.present and self.intact and self.valid and self.trusted and self.entire_file

    @property
    def summary(self) -> str:
        if not self.present:
            return self.problem or "文件中没有数字签名"
        if not (self.intact and self.valid):
            return "签名无效:文件在签名后被改动,或签名已损坏"
        if not self.entire_file:
            return "签名有效,但签名之后文件又被追加了内容"
        if not self.trusted:
            return "签名完整,但签名证书不是受信任的机构签发"
        return "签名有效,文件自签名后未被改动,签名证书可信"


def validate_signature(pdf: bytes, trust_roots: list) -> SignatureReport:
    """Validate the first signature of pdf with pyHanko against trust_roots (no network fetching)."""
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_signatures
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        return SignatureReport(False, problem=f"无法读取 PDF: {exc}")
    if not signatures:
        return SignatureReport(False)
    signature = signatures[0]
    context = ValidationContext(trust_roots=trust_roots, allow_fetching=False, revocation_mode="soft-fail")
    try:
        status = outside_event_loop(validate_pdf_signature, signature, context)
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return SignatureReport(True, problem=f"签名无法验证: {exc}")
    subject = status.signing_cert.subject.human_friendly if status.signing_cert else ""
    return SignatureReport(
        True, intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        entire_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        signer=subject, signing_time=status.signer_reported_dt,
    )


@dataclass(frozen=True)
class UploadCheck:
    """The result of checking an uploaded PDF against an issued notice."""

    notice: IssuedNotice
    sha256: str
    matches: bool
    other_serial: str | None
    signature: SignatureReport | None

    @property
    def message(self) -> str:
        if self.matches:
            return "核验通过:上传的文件与签发的文件完全一致,未被改动。"
        if self.other_serial:
            return f"不一致:上传的文件是另一份签发文件(编号 {self.other_serial}),不是本编号的文件。"
        return "不一致:上传的文件不是本编号签发的文件,或已被改动。"
