"""Keep things running: worker threads (`Supervisor`) and child processes (`ChildProcess`).

A worker is a function `run(stop: threading.Event) -> None` that returns only when asked to stop;
if it raises (its LISTEN connection dropped, the database restarted), it is logged and run again
after a backoff that grows to `max_backoff` seconds and resets once the worker has run a while.

A `ChildProcess` is one of the service's processes (a worker process, a further gRPC server
process): started by a function of the owner's, and started again the same way whenever it exits
on its own (killed, crashed), after a backoff from 1 s growing to 10 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing.process
import os
import sys
import threading
from collections.abc import Callable

from claims_service.ledger.following import Backoff, StopEvent

log = logging.getLogger(__name__)

Worker = Callable[[threading.Event], None]
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 10.0


class Supervisor:
    def __init__(self, *, max_backoff: float = 10.0) -> None:
        self._stop = StopEvent()  # the workers' waits for a NOTIFY end when it is set
        self._threads: list[threading.Thread] = []
        self._max_backoff = max_backoff
        self.restarts: dict[str, int] = {}

    def start(self, name: str, worker: Worker) -> None:
        self.restarts[name] = 0
        thread = threading.Thread(target=self._keep_running, args=(name, worker), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _keep_running(self, name: str, worker: Worker) -> None:
        backoff = Backoff(0.2, self._max_backoff)
        while not self._stop.is_set():
            backoff.started()
            try:
                worker(self._stop)
            except Exception:
                self.restarts[name] += 1
                wait = backoff.next_wait()
                log.exception("%s stopped with an error; restarting in %.1f s", name, wait)
            else:
                if self._stop.is_set():
                    return
                wait = backoff.next_wait()
            self._stop.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)


def name_process(name: str) -> None:
    """Name this process for `ps`, `top` and /proc/<pid>/comm (Linux; at most 15 bytes kept), so
    that an operator (or the benchmark) tells the service's processes apart; and its database
    connections too (`name_connections`)."""
    name_connections(name)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15] + b"\0", 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


CONNECTION_NAME_PREFIX = "claims-"


def name_connections(name: str) -> None:
    """Name this process's PostgreSQL connections from now on: their `application_name`, as
    `pg_stat_activity` shows it beside each backend's pid (libpq takes it from PGAPPNAME), so
    PostgreSQL's work can be told apart by process (README, "Operating it"). A connection that
    names itself keeps its name (the notification hub's LISTEN, the progress probe). A PGAPPNAME
    set by the operator is kept; one inherited from the service's own first process (it begins
    with "claims-") is replaced."""
    if os.environ.get("PGAPPNAME", CONNECTION_NAME_PREFIX).startswith(CONNECTION_NAME_PREFIX):
        os.environ["PGAPPNAME"] = name


class ChildProcess:
    """``ChildProcess(name, spawn, on_alive_change=...)``: ``spawn()`` starts the process and returns
    it; ``start()`` calls it and watches the child, calling it again after the child exits (while
    not stopping); ``on_alive_change(alive)`` is told as the child comes and goes; ``stop()`` sends
    SIGTERM, then SIGKILL after ``timeout``."""

    def __init__(self, name: str, spawn: Callable[[], multiprocessing.process.BaseProcess], *,
                 on_alive_change: Callable[[bool], None] = lambda _alive: None,
                 restart_delay: float = RESTART_DELAY, max_restart_delay: float = MAX_RESTART_DELAY) -> None:
        self.name = name
        self._spawn = spawn
        self.on_alive_change = on_alive_change
        self._backoff = Backoff(restart_delay, max_restart_delay)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no start again once stopping
        self._monitor = threading.Thread(target=self._keep_running, name=f"process-{name}", daemon=True)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        self._process = self._spawn()
        self._monitor.start()

    def _keep_running(self) -> None:
        was_alive: bool | None = None
        while not self._stopping.is_set():
            assert self._process is not None
            self._process.join(0.5)
            alive = self._process.is_alive()
            if alive != was_alive and not self._stopping.is_set():
                was_alive = alive
                self.on_alive_change(alive)
            if self._process.exitcode is not None and not self._stopping.is_set():
                self.restarts += 1
                wait = self._backoff.next_wait()
                log.error("the %s process exited (code %s); starting it again in %.1f s", self.name,
                          self._process.exitcode, wait)
                if not self._stopping.wait(wait):
                    with self._lock:
                        if self._stopping.is_set():
                            return
                        self._backoff.started()
                        self._process = self._spawn()

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM) without waiting: ``stop`` after it waits."""
        with self._lock:
            self._stopping.set()
        if self._process is not None and self._process.is_alive():
            self._process.terminate()

    def stop(self, timeout: float = 15.0) -> None:
        self.terminate()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if self._monitor.is_alive():
            self._monitor.join(2)
