"""Run every benchmark part on a fresh embedded PostgreSQL (or CLAIMS_DATABASE_URL's server)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measured phase")
    args = parser.parse_args()
    console = Console()

    with ExitStack() as stack:
        admin_url = os.environ.get("CLAIMS_DATABASE_URL")
        if not admin_url:
            from claims_service.database import embedded_server, server_url

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="claims-bench-")))
            server = stack.enter_context(embedded_server(tmp, delete_on_exit=True))
            admin_url = server_url(server, "postgres")
        suffix = uuid.uuid4().hex[:6]
        created: list[str] = []

        def create_database(name: str) -> str:
            full = f"{name}_{suffix}"
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(full)))
            created.append(full)
            return make_conninfo(admin_url, dbname=full)

        from bench import ledger

        results: dict[str, object] = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        }
        with Progress(console=console, transient=True) as progress:
            results["ledger"] = ledger.run(create_database, args.seconds, progress)

        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    table = Table(title="claims ledger benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    led = results["ledger"]
    table.add_row("raw commits/s (psycopg, 1 row per commit)", f"{led['raw_commits_per_s']:,.0f}")
    table.add_row("plain eventsourcing events/s (4 threads, 5 per save)", f"{led['plain_events_per_s']:,.0f}")
    table.add_row("hash-linked events/s (same load)", f"{led['chained_events_per_s']:,.0f}")
    table.add_row("hash-linking ratio (chained / plain)", f"{led['chain_ratio']:.2f}")
    table.add_row("hash-linked single-event saves/s (4 threads)", f"{led['single_event_saves_per_s']:,.0f}")
    console.print(table)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
