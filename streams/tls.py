"""The mesh's TLS material for Apache Kafka: a private CA and the broker's certificate, PEM.

`citymesh keys` makes them once in <keys>/tls/ (private keys mode 0600). Clients trust the
CA (CITYMESH_SSL_CA_LOCATION); the broker presents its certificate on every listener and,
on its internal and controller listeners, asks its peers for theirs (mutual TLS), so the
only principal those listeners accept is the broker's own: `User:CN=citymesh-broker`.
Participants and services never get a certificate: they authenticate with SCRAM over TLS.
The broker's certificate names 127.0.0.1 and localhost, where the engine listens.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from schemas.errors import CitymeshError

BROKER_CN = "citymesh-broker"
BROKER_PRINCIPAL = f"User:CN={BROKER_CN}"  # what the broker's own certificate authenticates as
VALID_DAYS = 825


class TlsError(RuntimeError, CitymeshError):
    """The TLS material is missing or unreadable."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the PEM files are: the CA certificate clients trust, and the broker's key store (its
    PKCS#8 private key followed by its certificate and the CA's, the layout Kafka's PEM key store reads)."""

    ca_cert: Path
    broker_keystore: Path

    @classmethod
    def at(cls, keys_dir: Path) -> "TlsFiles":
        d = Path(keys_dir) / "tls"
        return cls(d / "ca.pem", d / "broker.pem")

    def exist(self) -> bool:
        return self.ca_cert.exists() and self.broker_keystore.exists()


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = (b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False))
    return b.sign(issuer_key, hashes.SHA256())


def ensure(keys_dir: Path, rotate: bool = False) -> tuple[TlsFiles, bool]:
    """The CA and the broker certificate, created unless they exist; returns (files, created)."""
    files = TlsFiles.at(keys_dir)
    if files.exist() and not rotate:
        return files, False
    files.ca_cert.parent.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("citymesh mesh CA", ca_key, None, ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _cert(BROKER_CN, broker_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    # the CA's key signs nothing after this; keep it (0600) so a new broker certificate can be issued
    _write(files.ca_cert.with_name("ca.key"), ca_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    _write(files.broker_keystore, broker_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + broker.public_bytes(pem) + ca.public_bytes(pem), 0o600)
    _write(files.ca_cert, ca.public_bytes(pem), 0o644)
    return files, True
