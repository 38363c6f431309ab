"""The embedded PostgreSQL after a crash: a holder killed with SIGKILL (its pid stays in the
package's handle file) or a server killed outright (its postmaster.pid stays, naming a pid another
process may have taken since) must not keep the next clean shutdown from stopping the server. Each
start and stop runs in a fresh interpreter, as `claimsctl serve` would. Also: the data directory is
private."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

HOLD = """
import sys, time
from pathlib import Path
from claims_service.database import embedded_server
with embedded_server(Path(sys.argv[1])) as server:
    print(server.get_pid(), flush=True)
    time.sleep(600)
"""

ONCE = """
import sys
from pathlib import Path
import psycopg
from claims_service.database import embedded_server, server_url
with embedded_server(Path(sys.argv[1])) as server:
    with psycopg.connect(server_url(server, "postgres")) as conn:
        conn.execute("SELECT 1")
    print(server.get_pid(), flush=True)
"""


def postgres_of(pgdata: Path) -> list[psutil.Process]:
    """The live postgres server processes whose data directory is `pgdata`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and str(pgdata) in process.cmdline():
                found.append(process)
        except psutil.Error:
            continue
    return found


def gone(pgdata: Path, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while postgres_of(pgdata):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def run_once(data: Path) -> int:
    done = subprocess.run([sys.executable, "-c", ONCE, str(data)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


@pytest.fixture
def data():
    # Not under pytest's tmp_path: the server runs as its own user, who must pass through every
    # parent directory, and a pytest run as root keeps its base directory 0700.
    with tempfile.TemporaryDirectory(prefix="claims-embedded-") as tmp:
        os.chmod(tmp, 0o755)
        data = Path(tmp) / "data"
        yield data
        for process in postgres_of((data / "pg").resolve()):  # whatever a failed test left running
            process.terminate()


@pytest.mark.slow
def test_after_its_holder_is_killed_the_server_is_still_stopped_by_the_next_clean_shutdown(data):
    pgdata = (data / "pg").resolve()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(data)], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(holder.stdout.readline())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert psutil.pid_exists(server_pid)  # the server outlives its holder
    assert str(holder.pid) in (pgdata / ".handle_pids.json").read_text()

    assert run_once(data) == server_pid  # the next run finds it running and uses it...
    assert gone(pgdata)  # ...and its clean shutdown stops it, the dead holder notwithstanding
    assert not (pgdata / "postmaster.pid").exists()

    # Once more from cold: started, used, stopped.
    assert run_once(data) != server_pid
    assert gone(pgdata)


@pytest.mark.slow
def test_a_postmaster_pid_naming_another_live_process_is_recognised_as_stale(data):
    pgdata = (data / "pg").resolve()
    run_once(data)
    assert gone(pgdata)
    # As if the server had been killed and its pid taken by an unrelated process since.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (pgdata / "postmaster.pid").write_text(
            f"{stranger.pid}\n{pgdata}\n{int(time.time())}\n5432\n{pgdata}\n\n  5432001         0\nready\n")
        run_once(data)
        assert gone(pgdata)
        assert stranger.poll() is None  # left alone
        # A postmaster.pid cut short by the crash reads as stale too.
        (pgdata / "postmaster.pid").write_text(f"{stranger.pid}\n")
        run_once(data)
        assert gone(pgdata)
    finally:
        stranger.kill()
        stranger.wait(10)


@pytest.mark.slow
def test_the_data_directory_is_private(data):
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    run_once(data)
    # Owner only; when run as root, the package runs PostgreSQL as a user of its own, which must
    # pass through to its directory (0711: nobody else can list or read anything in it).
    expected = 0o711 if (data / "pg").stat().st_uid != os.geteuid() else 0o700
    assert stat.S_IMODE(data.stat().st_mode) == expected
    assert gone((data / "pg").resolve())


SETTINGS = """
import sys, time
from pathlib import Path
import psycopg
from claims_service.database import embedded_server, server_url
with embedded_server(Path(sys.argv[1])) as server:
    deadline = time.monotonic() + 10
    while True:  # the reload is signalled; a connection made after the server has taken it sees it
        with psycopg.connect(server_url(server, "postgres")) as conn:
            found = conn.execute(
                "SELECT current_setting('max_wal_size'), current_setting('checkpoint_timeout')").fetchone()
        if found == ("16GB", "15min") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(*found, flush=True)
"""


@pytest.mark.slow
def test_the_server_spaces_its_checkpoints_by_time_from_its_first_start_and_after_a_restart(data):
    for _ in range(2):  # the second start finds the settings in place and changes nothing
        done = subprocess.run([sys.executable, "-c", SETTINGS, str(data)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["16GB", "15min"]
    assert "max_wal_size = '16GB'" in (data / "pg" / "postgresql.auto.conf").read_text()
    assert gone((data / "pg").resolve())
