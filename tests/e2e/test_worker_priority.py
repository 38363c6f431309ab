"""The worker processes run at a lower CPU priority than the gRPC servers (#18): a request waits on
the servers, the workers only follow the ledger, so on shared cores the servers run first."""

from __future__ import annotations

import os
import time

from bench.load import ROLES, Server, children, role_of
from tests.e2e.test_faults import free_port


def niceness_by_role(server: Server, roles: set[str]) -> dict[str, int]:
    """Each child process's niceness above the first server process's, by role, once a process of
    each of `roles` has named itself (a worker names itself once its priority is set)."""
    deadline = time.monotonic() + 30
    while True:
        found = {role_of(pid): os.getpriority(os.PRIO_PROCESS, pid) for pid in children(server.process.pid)}
        if roles <= found.keys() or time.monotonic() > deadline:
            base = os.getpriority(os.PRIO_PROCESS, server.process.pid)
            return {role: nice - base for role, nice in found.items() if role in ROLES.values()}
        time.sleep(0.2)


def lowered(by: int) -> int:
    """What `by` more comes to from this process's niceness (19 is as low as it goes)."""
    return min(by, 19 - os.nice(0))


def test_workers_yield_the_cores_to_the_servers_by_default(database_url, tmp_path):
    server = Server(database_url, tmp_path, free_port())
    try:
        assert niceness_by_role(server, {"adjudicator", "projections", "tree"}) == {
            "adjudicator": lowered(5), "projections": lowered(10), "tree": lowered(10)}
    finally:
        server.stop()


def test_the_workers_priority_is_configured(database_url, tmp_path):
    server = Server(database_url, tmp_path, free_port(), env={
        "CLAIMS_ADJUDICATOR_NICENESS": "0", "CLAIMS_BACKGROUND_NICENESS": "3", "CLAIMS_SERVER_PROCESSES": "2"})
    try:
        # The second server process runs as the first; the adjudicator as the servers.
        assert niceness_by_role(server, {"server", "adjudicator", "projections", "tree"}) == {
            "server": 0, "adjudicator": 0, "projections": lowered(3), "tree": lowered(3)}
    finally:
        server.stop()
