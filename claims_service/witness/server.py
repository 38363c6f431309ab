"""The witness's HTTP endpoint (C2SP tlog-witness): `POST /add-checkpoint` and, for monitors,
`GET /<SHA-256 of the origin, hex>/checkpoint`.

The standard library's ThreadingHTTPServer is enough and adds no dependency: the exchange is one
small text request and one small text answer, once per checkpoint per log (every 1,000 events or
60 s), with HTTP/1.1 keep-alive as the spec asks; there is no routing, streaming or concurrency to
speak of, and every decision is the protocol's (`claims_service.ledger.witness.Witness`). Put TLS
in front of it (a reverse proxy) when it listens beyond localhost.
"""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from claims_service.ledger.witness import MAX_REQUEST_BYTES, TEXT, Answer, Witness

log = logging.getLogger(__name__)

_MONITOR_PATH = re.compile(r"^/([0-9a-f]{64})/checkpoint$")


def _handler(witness: Witness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        server_version = "claims-ledger-witness"

        def do_POST(self) -> None:  # noqa: N802 - the http.server interface
            if self.path != "/add-checkpoint":
                self.close_connection = True  # its body is not read
                self._send(Answer(404, "not found\n"))
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._send(Answer(411, "a Content-Length is required\n"))
                return
            if int(length) > MAX_REQUEST_BYTES:
                self._send(Answer(413, f"a request is at most {MAX_REQUEST_BYTES} bytes\n"))
                self.close_connection = True
                return
            body = self.rfile.read(int(length))
            try:
                answer = witness.add_checkpoint(body)
            except Exception:  # noqa: BLE001 - answer 500 and keep serving; the cause is logged
                log.exception("witness: add-checkpoint failed")
                answer = Answer(500, "internal error\n")
            if answer.status != 200:
                log.info("add-checkpoint from %s: %d %s", self.client_address[0], answer.status,
                         answer.body.strip()[:200])
            self._send(answer)

        def do_GET(self) -> None:  # noqa: N802
            match = _MONITOR_PATH.match(self.path)
            self._send(witness.latest(match.group(1)) if match else Answer(404, "not found\n"))

        def _send(self, answer: Answer) -> None:
            data = answer.body.encode("utf-8")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type or TEXT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the interface's name
            log.debug("%s %s", self.client_address[0], format % args)

    return Handler


class WitnessServer:
    """Serves `witness` on `addr` (host:port; port 0 picks a free one) until stopped."""

    def __init__(self, witness: Witness, addr: str = "127.0.0.1:8181") -> None:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a witness address is host:port, not {addr!r}")
        self.witness = witness
        self.httpd = ThreadingHTTPServer((host.strip("[]"), int(port)), _handler(witness))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> WitnessServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="witness-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
