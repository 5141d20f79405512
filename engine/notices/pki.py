"""Office signing keys and X.509 certificates.

Each issuing office (a village committee, a township government, a county bureau) signs its
notices with its own key. ``KeyStore.keygen`` makes a key and a certificate issued by the
deployment's self-made CA (``NoticeAuthority``) for demo and test deployments; in production an
office imports the certificate it holds (PKCS#12 or PEM) with ``import_pkcs12``/``import_pem``.
Private keys are stored encrypted with ``XIANGFLOW_NOTICE_KEY_PASSPHRASE`` when it is set; in
production it must be set, and the self-made CA is refused.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import cast

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.sign.signers.pdf_cms import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.core import settings
from engine.core.errors import NotFoundError, ValidationError
from engine.models import NoticeAuthority, OfficeKey, Region

PASSPHRASE_ENV = "XIANGFLOW_NOTICE_KEY_PASSPHRASE"
DEMO_CA_NAME = "乡流演示根证书（仅供演示和测试）"
DEMO_ORGANIZATION = "XiangFlow 演示部署"
OFFICE_KEY_BITS = 2048
CA_KEY_BITS = 3072
SOURCE_DEMO = "demo_ca"
SOURCE_IMPORTED = "imported"


def key_passphrase() -> bytes | None:
    """XIANGFLOW_NOTICE_KEY_PASSPHRASE as bytes, or None when unset (development and tests only)."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def office_code(region_code: str, office_name: str) -> str:
    return f"{region_code}/{office_name}"


def parse_office(text: str) -> tuple[str, str]:
    """Split ``<12-digit region code>/<office name>``, e.g. ``510921107000/宝梵镇人民政府``.

    :raises ValidationError: not of that shape.
    """
    region, sep, name = (text or "").strip().partition("/")
    region, name = region.strip(), name.strip()
    if not sep or not region.isdigit() or len(region) != 12 or not name or len(name) > 60:
        raise ValidationError("单位格式应为 区划代码/单位名称,例如 510921107000/宝梵镇人民政府",
                              {"office": "格式应为 12 位区划代码/单位名称"})
    return region, name


def _name(common_name: str, organization: str, region_code: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
    if region_code:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"区划代码 {region_code}"))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _pem_key(key, passphrase: bytes | None) -> str:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption).decode("ascii")


def _load_key(pem: str, encrypted: bool, passphrase: bytes | None, made_here: bool = False):
    """A stored private key. made_here: this system generated it (the demo CA's key, a demo-CA office key), so
    the RSA consistency checks (0.1–0.25 s a load) are skipped; a key someone imported is always checked in full."""
    if encrypted and not passphrase:
        raise ValidationError(f"签章私钥已加密,请设置 {PASSPHRASE_ENV}")
    try:
        return serialization.load_pem_private_key(pem.encode("ascii"), password=passphrase if encrypted else None,
                                                  unsafe_skip_rsa_key_validation=made_here)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"无法解开签章私钥({PASSPHRASE_ENV} 是否正确?)") from exc


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _certs_from_pem(text: str | None) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode("ascii")) if text and text.strip() else []


def cert_fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _public_numbers_equal(key, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


class _OfficeSigner(SimpleSigner):
    """pyHanko's SimpleSigner re-parses the private key for every signature (≈130 ms for RSA);
    this one keeps the parsed key."""

    def __init__(self, private_key, **kwargs):
        super().__init__(**kwargs)
        self._private_key = private_key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(
            digest_algorithm)
        if algorithm is not None and mechanism == "rsassa_pkcs1v15" and isinstance(self._private_key,
                                                                                   rsa.RSAPrivateKey):
            return self._private_key.sign(data, padding.PKCS1v15(), algorithm)
        if algorithm is not None and mechanism == "ecdsa" and isinstance(self._private_key,
                                                                        ec.EllipticCurvePrivateKey):
            return self._private_key.sign(data, ec.ECDSA(algorithm))
        return super().sign_raw(data, digest_algorithm)


@dataclass(frozen=True)
class OfficeSigner:
    """What signing a notice needs from an office: the pyHanko signer and the certificates."""

    key_id: int
    office_name: str
    signer: SimpleSigner
    chain_der_bytes: int


_SIGNERS: dict[tuple[int, str], OfficeSigner] = {}
_SIGNERS_LOCK = threading.Lock()


class KeyStore:
    """Office keys and certificates. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, passphrase: bytes | None = None):
        self.session = session
        self.clock = clock
        self.passphrase = passphrase if passphrase is not None else key_passphrase()

    # ------------------------------------------------------------------ lookups
    def active(self, code: str) -> OfficeKey | None:
        return self.session.scalar(select(OfficeKey).where(OfficeKey.office_code == code,
                                                           OfficeKey.retired_at.is_(None)))

    def active_keys(self) -> list[OfficeKey]:
        return list(self.session.scalars(select(OfficeKey).where(OfficeKey.retired_at.is_(None))
                                         .order_by(OfficeKey.region_code, OfficeKey.office_name)))

    def get(self, key_id: int) -> OfficeKey:
        """An office key by id.

        :raises NotFoundError: no such key.
        """
        key = self.session.get(OfficeKey, key_id)
        if key is None:
            raise NotFoundError("签章证书不存在")
        return key

    def trust_roots(self) -> list[asn1_x509.Certificate]:
        """The roots signatures are validated against: the demo CA and roots admins chose to trust."""
        pems = [a.cert_pem for a in self.session.scalars(select(NoticeAuthority))]
        pems += [k.trust_root_pem for k in self.session.scalars(
            select(OfficeKey).where(OfficeKey.trust_root_pem.is_not(None))) if k.trust_root_pem]
        seen, roots = set(), []
        for pem in pems:
            for cert in _certs_from_pem(pem):
                der = cert.public_bytes(serialization.Encoding.DER)
                if der not in seen:
                    seen.add(der)
                    roots.append(asn1_x509.Certificate.load(der))
        return roots

    def signer(self, key: OfficeKey) -> OfficeSigner:
        """The signer of an office key, parsed once per process."""
        cache_key = (key.id, key.cert_sha256)
        with _SIGNERS_LOCK:
            if cache_key in _SIGNERS:
                return _SIGNERS[cache_key]
        private_key = _load_key(key.key_pem, key.key_encrypted, self.passphrase, made_here=key.source == SOURCE_DEMO)
        cert = x509.load_pem_x509_certificate(key.cert_pem.encode("ascii"))
        chain = _certs_from_pem(key.chain_pem)
        der = [c.public_bytes(serialization.Encoding.DER) for c in (cert, *chain)]
        pkcs8 = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        signer = _OfficeSigner(
            private_key,
            signing_cert=asn1_x509.Certificate.load(der[0]),
            signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
            cert_registry=SimpleCertificateStore.from_certs([asn1_x509.Certificate.load(d) for d in der[1:]]),
        )
        office = OfficeSigner(key.id, key.office_name, signer, sum(len(d) for d in der))
        with _SIGNERS_LOCK:
            _SIGNERS[cache_key] = office
        return office

    # ------------------------------------------------------------------ the demo CA
    def demo_ca(self) -> NoticeAuthority:
        """The deployment's self-made CA, created on first use.

        :raises ValidationError: in production, or the CA key cannot be opened.
        """
        self._refuse_demo_in_production()
        authority = self.session.scalar(select(NoticeAuthority).order_by(NoticeAuthority.id).limit(1))
        if authority is not None:
            return authority
        now = self.clock.now()
        key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        name = _name(DEMO_CA_NAME, DEMO_ORGANIZATION)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        authority = NoticeAuthority(name=DEMO_CA_NAME, cert_pem=_cert_pem(cert),
                                    key_pem=_pem_key(key, self.passphrase),
                                    key_encrypted=bool(self.passphrase), created_at=now)
        self.session.add(authority)
        self.session.flush()
        return authority

    def keygen(self, region_code: str, office_name: str, validity_days: int = 1825) -> OfficeKey:
        """Make a key and a certificate from the self-made CA for an office; retire its previous key.

        :raises ValidationError: in production, or an unknown region.
        """
        self._refuse_demo_in_production()
        region = self._region(region_code)
        authority = self.demo_ca()
        ca_key = _load_key(authority.key_pem, authority.key_encrypted, self.passphrase, made_here=True)
        ca_cert = x509.load_pem_x509_certificate(authority.cert_pem.encode("ascii"))
        now = self.clock.now()
        key = rsa.generate_private_key(public_exponent=65537, key_size=OFFICE_KEY_BITS)
        not_after = min(now + timedelta(days=validity_days), ca_cert.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(office_name, office_name, region.code)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # no extendedKeyUsage: NSS (pdfsig) then accepts the certificate for document signing
            .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(  # the demo CA's key is RSA (demo_ca)
                cast(rsa.RSAPublicKey, ca_cert.public_key())), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return self._store(region.code, office_name, SOURCE_DEMO, key, cert, [ca_cert],
                           trust_root=None, authority_id=authority.id)

    # ------------------------------------------------------------------ real certificates
    def import_pkcs12(self, region_code: str, office_name: str, data: bytes, password: bytes | None,
                      trust_root: bool = False) -> OfficeKey:
        """Import an office's key and certificate (with its chain) from a PKCS#12 file.

        :raises ValidationError: unreadable file, wrong password, or an unusable certificate.
        """
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except (ValueError, TypeError) as exc:
            raise ValidationError("无法读取 PKCS#12 文件(密码是否正确?)") from exc
        if key is None or cert is None:
            raise ValidationError("PKCS#12 文件中没有私钥或证书")
        return self._import(region_code, office_name, key, cert, list(extra or []), trust_root)

    def import_pem(self, region_code: str, office_name: str, key_pem: bytes, cert_pem: bytes,
                   chain_pem: bytes = b"", password: bytes | None = None, trust_root: bool = False) -> OfficeKey:
        """Import an office's PEM private key, certificate and issuer chain.

        :raises ValidationError: unreadable input or an unusable certificate.
        """
        try:
            key = serialization.load_pem_private_key(key_pem, password=password)
            cert = x509.load_pem_x509_certificate(cert_pem)
            chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem.strip() else []
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"无法读取私钥或证书: {exc}") from exc
        return self._import(region_code, office_name, key, cert, chain, trust_root)

    def _import(self, region_code, office_name, key, cert, chain, trust_root: bool) -> OfficeKey:
        if settings.is_production() and not self.passphrase:
            raise ValidationError(f"生产环境必须设置 {PASSPHRASE_ENV} 以加密保存签章私钥")
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ValidationError("只支持 RSA 或 ECDSA 签章密钥")
        if not _public_numbers_equal(key, cert):
            raise ValidationError("私钥与证书不匹配")
        now = self.clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ValidationError("证书不在有效期内")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not (usage.digital_signature or usage.content_commitment):
                raise ValidationError("证书的密钥用途不包括数字签名")
        except x509.ExtensionNotFound:
            pass
        root = None
        if trust_root:
            roots = [c for c in chain if _is_self_signed(c)]
            if not roots:
                raise ValidationError("证书链中没有自签名的根证书,无法设为信任根")
            root = roots[-1]
        region = self._region(region_code)
        return self._store(region.code, office_name, SOURCE_IMPORTED, key, cert, chain, trust_root=root)

    # ------------------------------------------------------------------ storage
    def _store(self, region_code, office_name, source, key, cert, chain, trust_root, authority_id=None) -> OfficeKey:
        now = self.clock.now()
        code = office_code(region_code, office_name)
        previous = self.active(code)
        if previous is not None:
            previous.retired_at = now
            self.session.flush()
        row = OfficeKey(
            office_code=code, region_code=region_code, office_name=office_name, source=source,
            authority_id=authority_id, subject=cert.subject.rfc4514_string()[:400],
            cert_pem=_cert_pem(cert), chain_pem="".join(_cert_pem(c) for c in chain),
            trust_root_pem=_cert_pem(trust_root) if trust_root is not None else None,
            key_pem=_pem_key(key, self.passphrase), key_encrypted=bool(self.passphrase),
            cert_sha256=cert_fingerprint(cert), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, created_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def _region(self, code: str) -> Region:
        region = self.session.get(Region, code)
        if region is None:
            raise ValidationError(f"区划代码 {code} 不存在", {"office": "区划代码不存在"})
        return region

    def _refuse_demo_in_production(self) -> None:
        if settings.is_production():
            raise ValidationError("生产环境不使用自建演示 CA:请导入本单位的真实证书(flask notices import-cert)")


def certificate_summary(key: OfficeKey) -> dict[str, str]:
    """Readable facts about an office's certificate for pages: subject, issuer, validity, fingerprint."""
    cert = x509.load_pem_x509_certificate(key.cert_pem.encode("ascii"))
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.astimezone(timezone.utc).strftime("%Y-%m-%d"),
        "not_after": cert.not_valid_after_utc.astimezone(timezone.utc).strftime("%Y-%m-%d"),
        "sha256": key.cert_sha256,
        "source": "自建演示 CA 签发(仅供演示和测试)" if key.source == SOURCE_DEMO else "导入的单位证书",
    }

