"""A stand-in for "some other public HTTPS host" the sidecar must tunnel untouched.

``TLSHost`` mints its own root CA and a server certificate for ``127.0.0.1`` (IP SAN) and
``localhost`` (DNS SAN), serves HTTPS/1.1 (ALPN ``http/1.1``) on 127.0.0.1 port 0 from its own
thread, and answers every request with ``200 {"host": "tls-host", "path": <request-target>}``.
A client that trusts only ``ca_path`` and sees ``cert_der`` as the peer certificate has
talked to THIS server, not to a certificate minted by an intercepting proxy.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .openai_upstream import LoopbackHTTPServer, RecordedRequest, Responder, json_bytes


@dataclass(frozen=True)
class TLSMaterial:
    """A CA and a server certificate it signed, all PEM except ``*_der``."""

    ca_pem: bytes
    ca_der: bytes
    cert_pem: bytes
    cert_der: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "model-router tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


def make_tls_material(
    hostnames: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)
) -> TLSMaterial:
    """A fresh P-256 root CA and a leaf for ``hostnames``/``ips``, valid under strict X.509
    checks (SKI/AKI, key usage, serverAuth EKU, critical basic constraints)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("model-router test root CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name(hostnames[0] if hostnames else ips[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    return TLSMaterial(
        ca_pem=ca_cert.public_bytes(pem),
        ca_der=ca_cert.public_bytes(der),
        cert_pem=cert.public_bytes(pem),
        cert_der=cert.public_bytes(der),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TLSHost(LoopbackHTTPServer):
    """An HTTPS origin with its own CA; every request gets ``{"host": name, "path": target}``.

    Certificates are minted in ``__init__`` (so ``ca_pem``/``cert_der`` exist before start);
    ``ca_path`` is a PEM file in a temp dir that lives from ``start()`` to ``stop()``.
    """

    def __init__(self, name: str = "tls-host") -> None:
        super().__init__(name)
        self.material = make_tls_material()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self.material.ca_pem

    @property
    def cert_der(self) -> bytes:
        """DER of the server (leaf) certificate this host presents."""
        return self.material.cert_der

    @property
    def ca_fingerprint(self) -> str:
        """sha256 hex (lowercase, no colons) of the CA certificate's DER."""
        return sha256_hex(self.material.ca_der)

    @property
    def cert_fingerprint(self) -> str:
        """sha256 hex of the leaf certificate's DER."""
        return sha256_hex(self.material.cert_der)

    @property
    def ca_path(self) -> str:
        if self._tmp is None:
            raise RuntimeError("TLSHost.ca_path exists only while the host is started")
        return str(Path(self._tmp.name) / "ca.pem")

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this host's CA."""
        return ssl.create_default_context(cadata=self.material.ca_pem.decode())

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tls-host-")
        folder = Path(self._tmp.name)
        (folder / "ca.pem").write_bytes(self.material.ca_pem)
        (folder / "server.pem").write_bytes(self.material.cert_pem)
        (folder / "server.key").write_bytes(self.material.key_pem)
        try:
            super().start()
        except BaseException:
            self._cleanup()
            raise

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def ssl_context(self) -> ssl.SSLContext:
        assert self._tmp is not None
        folder = Path(self._tmp.name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(folder / "server.pem", folder / "server.key")
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def handle(self, request: RecordedRequest, responder: Responder) -> None:
        self._record(request)
        body = json_bytes({"host": self.name, "path": request.path})
        await responder.send(200, body, [("content-type", "application/json")])
