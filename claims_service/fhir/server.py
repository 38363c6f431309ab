"""uvicorn serving the FHIR app in a thread of the server process (`claimsctl serve`,
CLAIMS_FHIR_ADDR).

A thread, not another process: the endpoint reads through the server's own connection pool and
authenticates with the server's own `Authenticator`, so a key revoked through this server stops
working over HTTP at once, as over gRPC, and nothing is started or supervised twice. uvicorn runs
its own event loop in that thread (signals stay with the main thread, which stops the service);
the handlers' database reads run on Starlette's thread pool. The socket is bound in `start`, so a
busy address fails start-up with an OSError naming it, and port 0 picks a free port (`port`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger("claims_service.fhir")

START_TIMEOUT = 10.0


def split_address(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6 address]:port" as (host, port); ValueError when it is neither."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def bind(addr: str) -> socket.socket:
    host, port = split_address(addr)
    family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {addr} for FHIR: {error.strerror or error}") from error
    sock.set_inheritable(True)
    return sock


class FhirServer:
    def __init__(self, addr: str, app: ASGIApp, *, grace: float = 5.0) -> None:
        self.addr = addr
        self.app = app
        self.grace = grace
        self.port = 0
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return split_address(self.addr)[0]

    def start(self) -> None:
        self._socket = bind(self.addr)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self.app, loop="asyncio", http="h11", lifespan="off", log_config=None,
                                access_log=False, server_header=False, timeout_graceful_shutdown=int(self.grace))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="fhir-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"the FHIR endpoint on {self.addr} did not start")
            time.sleep(0.01)
        log.info("FHIR endpoint serving on http://%s/fhir", _display(self.host, self.port))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.grace + 5)
            if self._thread.is_alive():
                log.warning("the FHIR endpoint did not stop within %.0f s", self.grace + 5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None


def _display(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
