"""`make bench`: every part on a fresh embedded PostgreSQL (or CLAIMS_DATABASE_URL's server).

Parts: ledger (hash-chain cost, baselines), adjudication (engine, follower), tree (proofs on a
large tree), projections (rebuild rate), service (the whole gRPC path under a mixed load), and
processes (that load with one and with two server processes and adjudicator partitions), chain
(events/s through the one hash chain from several writers: the ceiling of one ledger),
observability (that load with metrics off, on, and with tracing at a 1 % sample), x12 (837
intake beside SubmitClaim, 835 generation), and encryption (that load with payloads plain and
sealed per member).
`--only PART` runs some; `--quick` shrinks sizes for a smoke run. Results: bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench import statements

RESULTS = Path(__file__).resolve().parent / "results.json"
PARTS = ("ledger", "adjudication", "tree", "streammap", "projections", "service", "processes", "chain", "observability",
         "x12", "encryption")


def median_role(runs: list[dict[str, Any]], role: str) -> float:
    """The median over runs of one process's CPU ms per claim (0 where a run did not see it)."""
    return statistics.median(r["cpu_ms_per_claim_by_role"].get(role, 0.0) for r in runs)


def each_run(growth: dict[str, Any], cell: Callable[[dict[str, Any]], str]) -> str:
    """One figure of every growth run, the empty ledger's runs, then the history's."""
    return " / ".join(" ".join(cell(r) for r in growth["runs"][kind]) for kind in ("empty", "big"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measured phase")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    parser.add_argument("--tree-leaves", type=int, default=1_000_000)
    parser.add_argument("--rebuild-events", type=int, default=200_000)
    parser.add_argument("--verify-events", type=int, default=1_000_000, help="ledger size for the verification rate")
    parser.add_argument("--claims", type=int, default=3_000, help="claims in the follower backlog")
    parser.add_argument("--growth", type=int, default=0, metavar="EVENTS",
                        help="also run the service load on a ledger prefilled with EVENTS events and compare")
    parser.add_argument("--paced-rate", type=float, default=0.0, metavar="CALLS_PER_S",
                        help="pace the service's paced phases at this rate, not at half the run's own end-to-end"
                             " rate (to compare two versions' latencies at one rate)")
    parser.add_argument("--statements", action="store_true",
                        help="with --growth: PostgreSQL's time per statement (pg_stat_statements) in each phase, and"
                             " the statements that grew most (bench/statements.py)")
    args = parser.parse_args()
    if args.statements and not args.growth:
        parser.error("--statements compares the phases of a --growth run")
    if args.quick:
        args.seconds, args.tree_leaves, args.rebuild_events, args.claims = 2.0, 20_000, 5_000, 300
        args.verify_events = 20_000
    parts = args.only or list(PARTS)
    console = Console()

    with ExitStack() as stack:
        admin_url = os.environ.get("CLAIMS_DATABASE_URL")
        if not admin_url:
            from claims_service.database import embedded_server, server_url

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="claims-bench-")))
            if args.statements:  # loaded at start only: start the server once to say so
                with embedded_server(tmp) as server:
                    statements.preload(server_url(server, "postgres"))
            server = stack.enter_context(embedded_server(tmp, delete_on_exit=True))
            admin_url = server_url(server, "postgres")
        if args.statements and not statements.preloaded(admin_url):
            parser.error(f"--statements needs {statements.LIBRARY} in the server's shared_preload_libraries")
        # A new cluster creates its WAL segments as it goes, each one stalling every commit: start
        # from the segments a server that has run for long reuses (bench/disk.py). A growth run's
        # history is written first and takes its share: without it the runs on the history created
        # segments (five in one 8 s paced run at 500,000 events) that the empty runs did not.
        from bench.disk import WAL_PER_PREFILLED_EVENT, preallocate_wal

        wal_preallocated = preallocate_wal(admin_url, (2048 + args.growth * WAL_PER_PREFILLED_EVENT // 2**20) if args.growth else 1024)
        suffix = uuid.uuid4().hex[:6]
        created: list[str] = []

        def create_database(name: str) -> str:
            full = f"{name}_{suffix}"
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(full)))
            created.append(full)
            url = make_conninfo(admin_url, dbname=full)
            if args.statements:
                statements.install(url)
            return url

        results: dict[str, Any] = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "options": vars(args),
            "wal_preallocated": wal_preallocated,
        }
        with Progress(console=console, transient=True) as progress:
            for part in parts:
                results[part] = RUNNERS[part](create_database, args, progress)
            if args.growth:
                from bench import load

                results["growth"] = load.growth(create_database, args, progress)

        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    console.print(figures_table(results))
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


def run_ledger(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import ledger

    results = ledger.run(create_database, args.seconds, progress)
    results["verify"] = ledger.verify_rates(create_database, args.verify_events, progress)
    return results


def run_adjudication(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import adjudication

    return adjudication.run(create_database, args.claims, min(args.seconds, 3.0), progress)


def run_tree(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench.tree import measure

    task = progress.add_task(f"Merkle tree of {args.tree_leaves:,} leaves", total=None)
    result = measure(create_database("bench_tree"), leaves=args.tree_leaves,
                     progress=lambda msg: progress.update(task, description=msg))
    progress.remove_task(task)
    return result


def run_projections(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from claims_service.migrate import migrate
    from bench.projections import measure_rebuild

    url = create_database("bench_projections")
    migrate(url)
    task = progress.add_task(f"projection rebuild over {args.rebuild_events:,} events", total=None)
    result = measure_rebuild(url, events=args.rebuild_events, progress=lambda msg: progress.update(task, description=msg))
    progress.update(task, description=f"reconcile over {result['events']:,} events")
    result["reconcile"] = measure_reconcile(url)
    progress.remove_task(task)
    return result


def measure_reconcile(url: str) -> dict[str, Any]:
    """`claimsctl reconcile` over the bench's largest ledger (its read models just rebuilt)."""
    from claims_service.reconcile import reconcile

    report = reconcile(url, wait_seconds=0)
    return {"events": report.events, "seconds": round(report.seconds, 2), "events_per_s": round(report.events_per_second),
            "clean": report.clean, "first_difference": str(report.differences[0]) if report.differences else None}


def run_service(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import load

    return load.run(create_database, args, progress)


def run_observability(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import observability

    return observability.run(create_database, args, progress)


def run_x12(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import x12

    return x12.run(create_database, args, progress)


def run_encryption(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import encryption

    return encryption.run(create_database, args, progress)


def run_processes(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import processes

    return processes.run(create_database, args, progress)


def run_chain(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import chain

    return chain.run(create_database, args, progress)


def run_streammap(create_database: Callable[[str], str], args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from bench import streammap

    return streammap.run(create_database, args, progress)


RUNNERS = {
    "streammap": run_streammap,
    "chain": run_chain,
    "processes": run_processes,
    "encryption": run_encryption,
    "x12": run_x12,
    "observability": run_observability,
    "ledger": run_ledger,
    "adjudication": run_adjudication,
    "tree": run_tree,
    "projections": run_projections,
    "service": run_service,
}


def figures_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"claims ledger benchmark ({results['machine']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")

    def row(label: str, value: Any, target: str = "", fmt: str = "{:,.0f}") -> None:
        table.add_row(label, fmt.format(value) if isinstance(value, (int, float)) else str(value), target)

    if "ledger" in results:
        led = results["ledger"]
        row("raw commits/s (psycopg, 1 row per commit)", led["raw_commits_per_s"])
        row("same writes without the hash chain, events/s (4 threads, 5/save)", led["plain_events_per_s"])
        row("hash-linked events/s (same load)", led["chained_events_per_s"])
        row("hash-linking ratio (chained / plain)", led["chain_ratio"], "≥ 0.90", "{:.2f}")
        verify = led["verify"]
        row(f"full verification events/s, {verify['events']:,} events (1 process / all cores)",
            f"{verify['single_process_per_s']:,.0f} / {verify['all_cores_per_s']:,.0f}", "≥ 100,000")
    if "adjudication" in results:
        adj = results["adjudication"]
        row("engine claim lines/s (pure, one core)", adj["engine_lines_per_s"], "≥ 5,000")
        row("follower claims/s from the ledger (3 lines, with commits)", adj["follower_claims_per_s"], "≥ 500")
        if "follower_cpu_ms_per_claim" in adj:
            row("CPU ms per claim: in-process submit (commands + group commit) / follower",
                f"{adj['in_process_submit_cpu_ms_per_claim']:.3f} / {adj['follower_cpu_ms_per_claim']:.3f}", "")
    if "tree" in results:
        tree = results["tree"]
        proofs, append = tree["proofs"], tree["append"]
        for key in ("inclusion", "consistency"):
            row(f"{key} proof p50 / p99 ms ({proofs['tree_leaves']:,} leaves)",
                f"{proofs[key]['p50_ms']:.2f} / {proofs[key]['p99_ms']:.2f}", "p99 < 5")
        row("tree append µs/event (batches of 10,000 / 100)",
            f"{append['us_per_event_batch_10000']} / {append['us_per_event_batch_100']}")
        if "stream_map_bytes_per_event" in append:
            row("stream map rows / bytes per event (every event a new stream)",
                f"{append['stream_map_rows_per_event']} / {append['stream_map_bytes_per_event']:,.0f}")
        if "checkpoint" in tree:
            cp = tree["checkpoint"]
            row("checkpoint p50 / p99 ms: signed / signed + 1 witness cosignature (HTTP)",
                f"{cp['signed']['p50_ms']:.1f} / {cp['signed']['p99_ms']:.1f} · "
                f"{cp['signed_and_cosigned']['p50_ms']:.1f} / {cp['signed_and_cosigned']['p99_ms']:.1f}")
    if "projections" in results:
        proj = results["projections"]
        row(f"projection rebuild events/s (slowest, {proj['events']:,} events)", proj["min_events_per_s"], "≥ 10,000")
        if "reconcile" in proj:
            rec = proj["reconcile"]
            row(f"reconcile events/s ({rec['events']:,} money events; {'clean' if rec['clean'] else 'NOT CLEAN'})",
                rec["events_per_s"], "≥ 50,000")
    if "service" in results:
        for label, value, target in results["service"].get("table", []):
            row(label, value, target)
    for part in ("streammap", "processes", "chain"):
        for label, value, target in results.get(part, {}).get("table", []):
            row(label, value, target)
    if "x12" in results:
        for label, value, target in results["x12"].get("table", []):
            row(label, value, target)
    if "observability" in results:
        for label, value, target in results["observability"].get("table", []):
            row(label, value, target)
    if "encryption" in results:
        for label, value, target in results["encryption"].get("table", []):
            row(label, value, target)
    if "ledger" in results:
        # Absolute rates drift with whatever else runs on a shared machine; ratios to baselines
        # measured in the same run drift much less.
        raw, plain = results["ledger"]["raw_commits_per_s"], results["ledger"]["plain_events_per_s"]
        ratios = []
        if "service" in results:
            ratios.append(("gRPC calls/s, saturated", results["service"]["saturated"]["calls_per_s"]))
            ratios.append(("claims adjudicated end to end/s", results["service"]["saturated"]["adjudicated_end_to_end_per_s"]))
        if "adjudication" in results:
            ratios.append(("follower claims/s", results["adjudication"]["follower_claims_per_s"]))
        for label, value in ratios:
            row(f"{label} ÷ raw commits/s  |  ÷ unchained events/s",
                f"{value / raw:.2f}  |  {value / plain:.2f}")
        results["ratios"] = {label: {"per_raw_commit": value / raw, "per_plain_event": value / plain} for label, value in ratios}
    if "growth" in results:
        growth = results["growth"]
        empty, big = growth["baseline"], growth["big"]
        row(f"growth: {growth['prefilled_events']:,} events prefilled, {growth['rounds']} round(s): calls/s empty / big (ratio)",
            f"{empty['calls_per_s']:,.0f} / {big['calls_per_s']:,.0f} ({growth['calls_ratio']:.2f})", "≥ 0.90")
        row("growth: paced submit p99 ms empty / big (ratio)",
            f"{empty['paced_p99_ms']:.1f} / {big['paced_p99_ms']:.1f} ({growth['p99_ratio']:.2f})", "≤ 1.2")
        row("growth: service CPU ms per claim empty / big (ratio)",
            f"{empty['cpu_ms_per_claim']:.2f} / {big['cpu_ms_per_claim']:.2f} ({growth['cpu_ratio']:.2f})", "")
        row("growth: service CPU per claim in units of the load client's own, empty / big (ratio; the machine's"
            " speed cancels out, roughly)", f"{empty['cpu_per_claim_in_client_units']:.2f} / {big['cpu_per_claim_in_client_units']:.2f}"
            f" ({growth['cpu_in_client_units_ratio']:.2f})", "")
        roles = ("server", "adjudicator", "projections", "tree", "postgres")
        row("growth: CPU ms per claim by process, empty / big (medians): " + " · ".join(roles),
            " · ".join(f"{median_role(growth['runs']['empty'], r):.2f} / {median_role(growth['runs']['big'], r):.2f}"
                       for r in roles), "")
        row("growth: disk flushes over 20 ms during each paced run, empty / big",
            each_run(growth, lambda r: str(r["disk_stalls"])), "")
        row("growth: paced submits over 20 ms in each run (of them, overlapping no slow disk flush), empty / big",
            each_run(growth, lambda r: f"{r['slow_calls']} ({r['slow_calls_unexplained']})"), "")
        row("growth: seconds each run waited for autovacuum to finish before its phases, empty / big",
            each_run(growth, lambda r: f"{r['autovacuum_waited_s']:.0f}"), "")
        row("growth: paced submit p50 / p99 in each run, ms, empty / big",
            each_run(growth, lambda r: f"{r['paced_p50_ms']:.1f}/{r['paced_p99_ms']:.1f}"), "")
        row("growth: WAL per call in each paced run (kB · full-page images; segments created), empty / big",
            each_run(growth, lambda r: r["paced_wal_per_call"]), "")
        row("growth: the machine's cores in each paced run, % busy · some task waiting for a core · stolen, empty / big",
            each_run(growth, lambda r: r.get("paced_machine_cpu", "?")), "")
        row("growth: full-page images per call by relation, the most in the last paced run on the history",
            ", ".join(f"{name} {n}" for name, n in growth["runs"]["big"][-1]["paced_fpi_per_call_by_relation"].items()), "")
        row("growth: autovacuum and autoanalyze runs that ended in each paced run, empty / big",
            each_run(growth, lambda r: str(r.get("paced_autovacuum_runs"))), "")
        for kind, where in (("empty", "empty"), ("big", "on the history")):
            row(f"growth: WAL kB per call by record type, the most, in each paced run {where}",
                " / ".join(", ".join(f"{name} {kb}" for name, kb in r.get("paced_wal_kb_per_call_by_record", {}).items())
                           for r in growth["runs"][kind]), "")
        if "statements" in growth:
            found = growth["statements"]
            row("growth: PostgreSQL's statement time, ms per claim, saturated, empty / big (pg_stat_statements)",
                f"{found['ms_per_claim']['empty']:.2f} / {found['ms_per_claim']['big']:.2f}", "")
            for s in found["grown_most"]:
                row(f"  grew: {s['query'][:110]}",
                    f"{s['empty']['ms_per_claim']:.3f} / {s['big']['ms_per_claim']:.3f} ms; "
                    f"{s['empty']['blocks_read_per_call']:.1f} / {s['big']['blocks_read_per_call']:.1f} blocks read a call", "")
            row("growth: blocks read from outside the buffers per claim by relation, saturated, empty / big", "", "")
            for r in found.get("relations_read_most", []):
                hot = (f"; updates {r['empty']['updates_per_claim']:.2f} / {r['big']['updates_per_claim']:.2f}"
                       f" a claim, {r['empty']['hot_share']:.0%} / {r['big']['hot_share']:.0%} HOT"
                       if r["big"]["updates_per_claim"] else "")
                row(f"  read: {r['relation']}",
                    f"{r['empty']['blocks_read_per_claim']:.2f} / {r['big']['blocks_read_per_claim']:.2f}"
                    f" (found in the buffers {r['empty']['blocks_hit_per_claim']:.1f} / {r['big']['blocks_hit_per_claim']:.1f}){hot}", "")
        row("growth: start-up on the history until quiet (the auditor's start-up round, paced, in the background), s", f"{growth['start_up_seconds']:.0f}", "")
    return table


if __name__ == "__main__":
    main()
