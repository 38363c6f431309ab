"""The log's side of witnessing: submit each signed checkpoint to the configured witnesses
(C2SP tlog-witness add-checkpoint, over HTTP with the standard library's http.client), keep the
cosignatures they return (table `ledger_cosignatures`, migration 0017) and serve them appended to
the checkpoint's note.

A witness is asked with a consistency proof from the size it last cosigned (remembered per
witness, else read from the cosignatures stored, else 0); a 409 answer names its real size and
the request is made once more from there. A witness that is down, slow or refuses never stops
the log from signing: the checkpoint is stored with the cosignatures it got, the failure is logged,
and the latest checkpoint is offered again later (`retry`). A refusal (4xx other than 409) is
logged as an error: the witness saw something inconsistent, and keeps the evidence.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from claims_service.ledger.cosignature import CosignerKey, verify_cosignatures
from claims_service.ledger.note import CheckpointError, EM_DASH, split_note
from claims_service.ledger.witness import SIZE_CONTENT_TYPE, add_checkpoint_request

log = logging.getLogger(__name__)

ProofSource = Callable[[int, int], list[bytes]]
"""(old size, new size) -> the consistency proof between them."""


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the log submits to: its submission URL prefix and its verifier key."""

    url: str
    key: CosignerKey

    @classmethod
    def parse(cls, text: str) -> WitnessEndpoint:
        """`<URL> <witness verifier key>`, e.g. `http://127.0.0.1:8181 witness.example/w1+1a2b3c4d+BA…`."""
        parts = text.split()
        if len(parts) != 2:
            raise CheckpointError(f"a witness is '<URL> <verifier key>', not {text.strip()[:60]!r}")
        url, key = parts
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname or split.query or split.fragment:
            raise CheckpointError(f"a witness URL is http(s)://host[:port][/prefix], not {url!r}")
        return cls(url.rstrip("/"), CosignerKey.parse(key))

    def __str__(self) -> str:
        return f"{self.url} {self.key}"


def parse_witnesses(text: str) -> tuple[WitnessEndpoint, ...]:
    """Witnesses separated by commas or newlines, each `<URL> <verifier key>`."""
    entries = [e for chunk in text.split("\n") for e in chunk.split(",") if e.strip()]
    witnesses = tuple(WitnessEndpoint.parse(e) for e in entries)
    labels = [w.key.label for w in witnesses]
    if len(set(labels)) != len(labels):
        raise CheckpointError("a witness key is listed twice")
    return witnesses


class WitnessUnavailable(Exception):
    """The witness could not be reached, or answered something the protocol does not allow."""


class WitnessRefused(Exception):
    """The witness refused to cosign (an HTTP 4xx other than 409)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body.strip()[:300]}")


class HttpWitness:
    """One witness's HTTP connection, kept alive between checkpoints (the spec asks clients to)."""

    def __init__(self, endpoint: WitnessEndpoint, timeout: float) -> None:
        split = urllib.parse.urlsplit(endpoint.url)
        self.endpoint = endpoint
        self.https = split.scheme == "https"
        self.host = split.hostname or ""
        self.port = split.port
        self.prefix = split.path.rstrip("/")
        self.timeout = timeout
        self.lock = threading.Lock()  # one request at a time on the connection
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, str, str]:
        """(status, content type, body); WitnessUnavailable when it cannot be reached."""
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self._conn = cls(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", self.prefix + path, body=body,
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
                response = self._conn.getresponse()
                data = response.read(64 * 1024)
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.getheader("Content-Type", ""), data.decode("utf-8", "replace")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self.close()
                if reused and attempt == 0:
                    continue  # the witness closed an idle kept-alive connection: once more, afresh
                raise WitnessUnavailable(f"{type(error).__name__}: {error}") from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise WitnessUnavailable(f"{type(error).__name__}: {error}".rstrip(": ")) from None
        raise WitnessUnavailable("unreachable")  # not reached

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Witnessing:
    """Collects cosignatures for the log's checkpoints from `endpoints`."""

    endpoints: Sequence[WitnessEndpoint]
    timeout: float = 5.0
    retry_seconds: float = 30.0
    _clients: dict[str, HttpWitness] = field(default_factory=dict, init=False, repr=False)
    _known: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _last_retry: float = field(default=float("-inf"), init=False, repr=False)
    _db_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        for endpoint in self.endpoints:
            self._clients[endpoint.key.label] = HttpWitness(endpoint, self.timeout)

    def cosign(self, conn: psycopg.Connection, tree_size: int, root_hash: bytes, note: str,
               proof: ProofSource) -> str:
        """Ask every witness that has not cosigned this checkpoint yet; store the cosignatures that
        verify and return `note` with them appended. Never raises for a witness's sake."""
        have = self._stored(conn, tree_size, root_hash)
        todo = [e for e in self.endpoints if e.key.label not in have]
        if not todo:
            return note

        def locked_proof(old: int, new: int) -> list[bytes]:
            with self._db_lock:  # the caller's connection, shared by the submitting threads
                return proof(old, new)

        def known(endpoint: WitnessEndpoint) -> int:
            if endpoint.key.label not in self._known:
                with self._db_lock:
                    row = conn.execute("SELECT max(tree_size) FROM ledger_cosignatures WHERE cosigner = %s",
                                       (endpoint.key.label,)).fetchone()
                self._known[endpoint.key.label] = int(row[0]) if row and row[0] is not None else 0
            return self._known[endpoint.key.label]

        def one(endpoint: WitnessEndpoint) -> str | None:
            return self._submit(endpoint, tree_size, note, known(endpoint), locked_proof)

        if len(todo) == 1:
            lines = [one(todo[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="witness") as pool:
                lines = list(pool.map(one, todo))
        got = [(e, line) for e, line in zip(todo, lines) if line is not None]
        if got:
            conn.execute(
                "INSERT INTO ledger_cosignatures (tree_size, root_hash, cosigner, line, cosigned_at)"
                " SELECT %s, %s, c, l, to_timestamp(t) FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS q(c, l, t)"
                " ON CONFLICT DO NOTHING",
                (tree_size, root_hash, [e.key.label for e, _ in got], [line for _, line in got],
                 [_timestamp(note, line, e.key) for e, line in got]),
            )
        missing = [e.key.label for e in todo if e.key.label not in {g.key.label for g, _ in got}]
        if missing:
            log.warning("checkpoint of %d leaves stored with %d of %d witness cosignatures (missing: %s);"
                        " the witnesses are asked again within %.0f s", tree_size, len(have) + len(got),
                        len(self.endpoints), ", ".join(missing), self.retry_seconds)
        return note + "".join(line for _, line in got)

    def retry_due(self) -> bool:
        """At most every `retry_seconds`: time to offer the latest checkpoint to the witnesses again."""
        now = time.monotonic()
        if now - self._last_retry < self.retry_seconds:
            return False
        self._last_retry = now
        return True

    def missing(self, conn: psycopg.Connection, tree_size: int, root_hash: bytes) -> bool:
        return len(self._stored(conn, tree_size, root_hash)) < len(self.endpoints)

    def _stored(self, conn: psycopg.Connection, tree_size: int, root_hash: bytes) -> set[str]:
        with self._db_lock:
            rows = conn.execute("SELECT cosigner FROM ledger_cosignatures WHERE tree_size = %s AND root_hash = %s",
                                (tree_size, root_hash)).fetchall()
        return {row[0] for row in rows}

    def _submit(self, endpoint: WitnessEndpoint, size: int, note: str, old: int, proof: ProofSource) -> str | None:
        """One witness's cosignature line, or None (logged) when it gave none."""
        client = self._clients[endpoint.key.label]
        label = endpoint.key.label
        started = time.perf_counter()
        try:
            with client.lock:
                for _ in range(2):  # once more from the size a 409 names
                    if old > size:
                        log.info("witness %s has cosigned %d leaves, more than this checkpoint's %d: not submitted",
                                 label, old, size)
                        self._known[label] = old
                        return None
                    body = add_checkpoint_request(old, proof(old, size) if 0 < old < size else [], note)
                    status, content_type, text = client.post("/add-checkpoint", body)
                    if status == 409 and content_type.split(";")[0].strip() == SIZE_CONTENT_TYPE:
                        try:
                            old = int(text.strip())
                        except ValueError:
                            raise WitnessUnavailable(f"a 409 answer without a size: {text[:80]!r}") from None
                        continue
                    if status == 200:
                        line = self._verified(endpoint, note, text)
                        self._known[label] = size
                        log.info("witness %s cosigned the checkpoint of %d leaves (%.1f ms)", label, size,
                                 (time.perf_counter() - started) * 1e3)
                        return line
                    if 400 <= status < 500:
                        raise WitnessRefused(status, text)
                    raise WitnessUnavailable(f"HTTP {status}: {text.strip()[:200]}")
                raise WitnessUnavailable("it answered 409 twice")
        except WitnessRefused as error:
            log.error("witness %s REFUSED to cosign the checkpoint of %d leaves (%s): the log's history is not"
                      " consistent with what this witness cosigned before, or the request was wrong; the witness"
                      " keeps the evidence", label, size, error)
        except (WitnessUnavailable, CheckpointError) as error:
            log.warning("witness %s gave no cosignature for the checkpoint of %d leaves: %s", label, size, error)
        return None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    @staticmethod
    def _verified(endpoint: WitnessEndpoint, note: str, answer: str) -> str:
        """The answer's cosignature line by this witness's key, verified over the note's text."""
        if not answer.endswith("\n") or any(not line.startswith(EM_DASH + " ") for line in answer.split("\n")[:-1]):
            raise WitnessUnavailable("the answer is not signature lines")
        body, _ = split_note(note)
        for line in answer.split("\n")[:-1]:
            try:
                if verify_cosignatures(body + "\n" + line + "\n", [endpoint.key]):
                    return line + "\n"
            except CheckpointError as error:
                raise WitnessUnavailable(f"its cosignature does not verify: {error}") from None
        raise WitnessUnavailable(f"the answer holds no cosignature by {endpoint.key.label}")


def _timestamp(note: str, line: str, key: CosignerKey) -> int:
    body, _ = split_note(note)
    return verify_cosignatures(body + "\n" + line, [key])[0].timestamp
