"""Throwaway TLS files for a private Redis: a CA and a server certificate for 127.0.0.1, made by `openssl`.

    files = TlsFiles.make(workdir)   files.ca, files.cert, files.key (PEM)
    files.server_args(port)          redis-server's options: TLS only, on `port` (and TLS on the cluster bus)
    files.query                      the rediss:// query that trusts the CA (`?ssl_ca_certs=…`)

The server certificate names 127.0.0.1 (subjectAltName), so clients verify it, host name included.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, workdir: Path) -> TlsFiles:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("no openssl: run ./scripts/test, which installs it")
        workdir.mkdir(parents=True, exist_ok=True)
        ca, ca_key = workdir / "ca.crt", workdir / "ca.key"
        cert, key, request = workdir / "server.crt", workdir / "server.key", workdir / "server.csr"
        extensions = workdir / "server.ext"
        extensions.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")
        steps = [
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=plugwatch test CA",
             "-keyout", str(ca_key), "-out", str(ca)],
            [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
             "-out", str(request)],
            [openssl, "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(extensions), "-out", str(cert)],
        ]
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=60)
        return cls(ca, cert, key)

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
