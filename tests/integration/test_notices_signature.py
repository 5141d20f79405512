"""PAdES signatures: pyHanko's validator and poppler's pdfsig both accept an issued notice, both reject it
after a one-byte change; office keys rotate, real certificates import, keys are encrypted at rest."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from notices_support import (
    PHONES,
    TOWNSHIP,
    VILLAGE,
    ca_pem,
    case_at,
    ensure_office_keys,
    flip_one_byte,
    issue,
    nss_db_trusting,
    pdfsig,
    pdfsig_verdict,
    stored,
)
from pyhanko.pdf_utils.reader import PdfFileReader

from engine.core.errors import ValidationError
from engine.models import OfficeKey
from engine.notices.pki import KeyStore, office_code
from engine.notices.verify import validate_signature


@pytest.fixture
def signed(db):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    serial, pdf = issue(db, "demo_clerk", "village_public_notice", [case_id], PHONES)
    return serial, pdf


def _roots(db):
    with db.uow() as work:
        return KeyStore(work.session, db.clock).trust_roots()


def test_pyhanko_reports_the_signature_intact_trusted_and_covering_the_whole_file(db, signed):
    _serial, pdf = signed
    report = validate_signature(pdf, _roots(db))
    assert report.ok, report
    assert "冬笋街社区居民委员会" in report.signer
    untrusted = validate_signature(pdf, [])
    assert untrusted.intact and untrusted.valid and not untrusted.trusted


def test_pdfsig_reports_the_signature_valid_and_with_the_ca_in_its_nss_database_trusted(db, signed, tmp_path):
    _serial, pdf = signed
    out = pdfsig(pdf, tmp_path)
    assert "Signer Certificate Common Name: 冬笋街社区居民委员会" in out
    assert "Signature Type: ETSI.CAdES.detached" in out  # PAdES
    assert "Total document signed" in out
    signature, certificate = pdfsig_verdict(out)
    assert signature == "Signature is Valid."
    assert certificate == "Certificate issuer isn't Trusted."  # no NSS database trusts the self-made CA

    nssdir = nss_db_trusting(ca_pem(db), tmp_path)
    assert pdfsig_verdict(pdfsig(pdf, tmp_path, nssdir)) == ("Signature is Valid.", "Certificate is Trusted.")


def test_a_one_byte_change_makes_pyhanko_and_pdfsig_report_the_signature_invalid(db, signed, tmp_path):
    _serial, pdf = signed
    changed = flip_one_byte(pdf)
    assert len(changed) == len(pdf) and sum(a != b for a, b in zip(changed, pdf, strict=True)) == 1

    report = validate_signature(changed, _roots(db))
    assert report.present and not report.intact and not report.ok

    nssdir = nss_db_trusting(ca_pem(db), tmp_path)
    signature, _certificate = pdfsig_verdict(pdfsig(changed, tmp_path, nssdir))
    assert signature in ("Digest Mismatch.", "Signature is Invalid.")


def test_appending_to_a_signed_notice_is_reported_as_not_covering_the_whole_file(db, signed):
    _serial, pdf = signed
    report = validate_signature(pdf + b"\n% appended\n", _roots(db))
    assert report.intact and not report.entire_file and not report.ok


def test_keygen_retires_the_previous_key_and_new_notices_are_signed_with_the_new_one(db, signed):
    first_serial, _pdf = signed
    with db.uow() as work:
        keys = KeyStore(work.session, db.clock)
        old = keys.active(office_code(VILLAGE, "冬笋街社区居民委员会"))
        new = keys.keygen(VILLAGE, "冬笋街社区居民委员会")
        old_id, new_id, new_fingerprint = old.id, new.id, new.cert_sha256
    with db.uow() as work:
        assert work.session.get(OfficeKey, old_id).retired_at == db.clock.now()
        assert work.session.get(OfficeKey, new_id).retired_at is None
    case_id = case_at(db, db.household("李秀英"), "village_notice")
    serial, pdf = issue(db, "demo_clerk", "village_public_notice", [case_id], PHONES)
    assert stored(db, serial).office_key_id == new_id
    assert stored(db, first_serial).office_key_id == old_id
    assert validate_signature(pdf, _roots(db)).ok
    cert = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0].signer_cert
    assert hashlib.sha256(cert.dump()).hexdigest() == new_fingerprint


def _external_pkcs12(now, password: bytes) -> bytes:
    """A certificate from a CA that is not XiangFlow's (as an office's real one would be), ECDSA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "某省电子认证服务(测试)")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=2))
          .not_valid_after(now + timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "宝梵镇人民政府")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=700))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return pkcs12.serialize_key_and_certificates(b"office", key, cert, [ca],
                                                  serialization.BestAvailableEncryption(password))


def test_an_imported_pkcs12_certificate_signs_the_townships_approval_forms_and_its_root_can_be_trusted(db):
    ensure_office_keys(db)
    data = _external_pkcs12(db.clock.now(), b"p12-secret")
    with db.uow() as work:
        keys = KeyStore(work.session, db.clock)
        with pytest.raises(ValidationError):
            keys.import_pkcs12(TOWNSHIP, "宝梵镇人民政府", data, b"wrong")
        key = keys.import_pkcs12(TOWNSHIP, "宝梵镇人民政府", data, b"p12-secret", trust_root=True)
        assert key.source == "imported" and key.subject == "CN=宝梵镇人民政府"
        assert key.trust_root_pem.startswith("-----BEGIN CERTIFICATE-----")
    case_id = case_at(db, db.household("刘桂芳"), "exited")
    serial, pdf = issue(db, "demo_clerk", "approval_form", [case_id], {})
    report = validate_signature(pdf, _roots(db))
    assert report.ok and "宝梵镇人民政府" in report.signer
    assert stored(db, serial).office.source == "imported"


def test_private_keys_are_encrypted_at_rest_with_the_passphrase_and_refused_without_it(db):
    with db.uow() as work:
        keys = KeyStore(work.session, db.clock, passphrase=b"correct horse")
        key = keys.keygen(TOWNSHIP, "宝梵镇加密测试办公室")
        assert key.key_encrypted and key.key_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        key_id = key.id
    with db.uow() as work:
        key = work.session.get(OfficeKey, key_id)
        with pytest.raises(ValidationError, match="XIANGFLOW_NOTICE_KEY_PASSPHRASE"):
            KeyStore(work.session, db.clock, passphrase=b"wrong").signer(key)
        assert KeyStore(work.session, db.clock, passphrase=b"correct horse").signer(key).office_name == \
            "宝梵镇加密测试办公室"


def test_production_refuses_the_self_made_ca(db, monkeypatch):
    monkeypatch.setenv("XIANGFLOW_ENV", "production")
    with db.uow() as work, pytest.raises(ValidationError, match="真实证书"):
        KeyStore(work.session, db.clock, passphrase=b"x").keygen(TOWNSHIP, "宝梵镇人民政府")
