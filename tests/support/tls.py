"""A TLS endpoint whose certificate no test cluster's CA signed."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.support.pki import TestPKI


class ForeignTLSServer:
    """Answers TLS on a port with a certificate from a CA the cluster's CA is not."""

    def __init__(self, root: Path) -> None:
        pki = TestPKI(root)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(pki.serving.cert), str(pki.serving.key))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (OSError, ssl.SSLError):
                pass  # the client refused our certificate, as it must

    def close(self) -> None:
        self.sock.close()
