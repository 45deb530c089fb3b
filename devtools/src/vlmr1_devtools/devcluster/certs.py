"""Throwaway certificates for the local control plane: a CA, a serving certificate for
127.0.0.1/localhost and a ``system:masters`` client certificate (what the proxy presents).

Third-party: ``cryptography`` (imported inside make_certs, so importing this module is free).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path, user: str = "vlmr1-admin") -> Certs:
    """Write a throwaway CA, a serving cert for 127.0.0.1/localhost and a system:masters client cert."""
    import ipaddress

    try:
        from cryptography import x509
    except ImportError as exc:  # a dev-only dependency
        from vlmr1_devtools.devcluster.errors import ControlPlaneError

        raise ControlPlaneError(
            "the local control plane needs the 'cryptography' package (pip install 'vlmr1[dev]')"
        ) from exc
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
        )

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        crt, pem = directory / f"{stem}.crt", directory / f"{stem}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem.chmod(0o600)
        return crt, pem

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("vlmr1-test-ca")
    ca_cert = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = write("ca", ca_cert, ca_key)

    def leaf(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = builder(subject, ca_name, key).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san is not None:
            b = b.add_extension(san, critical=False)
        return write(stem, b.sign(ca_key, hashes.SHA256()), key)

    server_cert, server_key = leaf(
        "apiserver",
        name("localhost"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
    )
    # The apiserver's x509 authenticator maps CN -> user name and O -> groups;
    # system:masters is always allowed by the delegated authorizer.
    client_cert, client_key = leaf("admin", name(user, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None)
    return Certs(ca_path, server_cert, server_key, client_cert, client_key)
