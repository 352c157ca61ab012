"""Self-signed certificates for loopback TLS servers in tests (made with the openssl CLI)."""
from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest


def self_signed(directory: Path, subject: str, alt_name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A (server, client) context pair: the server presents a certificate for `alt_name` (`IP:...` or
    `DNS:...`), and the client trusts exactly that certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a self-signed certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={subject}", "-addext", f"subjectAltName={alt_name}",
                    "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
                   check=True, capture_output=True, timeout=30)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cafile=str(directory / "cert.pem"))
    return server, client
