"""claimsctl status: the running service at a glance, as its metrics show it.

    claimsctl status [--json] [--database]

Reads the service's metrics endpoint (``CLAIMS_METRICS_ADDR``): health and its failing conditions,
both processes (up, restarts, CPU, memory), the ledger's head, each follower's position and lag
(the adjudicator, every projection, the Merkle tree), the last signed checkpoint and the last
verification. When the endpoint does not answer (the service is down, or metrics are off), or with
``--database``, the same picture from the database itself, less what only the running service
knows (health, processes, lag in seconds). Exit 1 while health is NOT_SERVING, else 0.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg

from claims_service.config import Config
from claims_service.database import database_url
from claims_service.observability.metrics import parse_addr
from claims_service.observability.progress import read_snapshot


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="health, processes, followers' lag, last checkpoint and verification")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--database", action="store_true", help="read the database, not the metrics endpoint")
    parser.set_defaults(func=cmd_status)


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    picture = None
    if config.metrics_addr and not args.database:
        picture = from_metrics(config.metrics_addr)
    if picture is None:
        with database_url(config) as url, psycopg.connect(url, autocommit=True) as conn:
            picture = from_database(conn)
    if args.json:
        print(json.dumps(picture, indent=2))
    else:
        print(render(picture))
    return 1 if picture.get("health") == "NOT_SERVING" else 0


def from_metrics(addr: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The picture from the metrics endpoint; None when it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    host, port = parse_addr(addr)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own endpoint
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def one(name: str) -> float | None:
        found = samples.get(name)
        return found[0][1] if found else None

    def by(name: str, label: str) -> dict[str, float]:
        return {labels[label]: value for labels, value in samples.get(name, ()) if label in labels}

    positions = by("claims_follower_position", "follower")
    lag_events = by("claims_follower_lag_events", "follower")
    lag_seconds = by("claims_follower_lag_seconds", "follower")
    failing = sorted(by("claims_health_condition_failing", "condition"))
    picture: dict[str, Any] = {
        "source": url,
        "health": "SERVING" if one("claims_health_serving") == 1 else "NOT_SERVING",
        "failing": failing,
        "processes": {
            "server": {"up": True, "cpu_seconds": one("claims_server_process_cpu_seconds_total"),
                       "resident_bytes": one("claims_server_process_resident_memory_bytes")},
            "workers": {"up": one("claims_workers_up") == 1, "restarts": int(one("claims_workers_restarts_total") or 0),
                        "cpu_seconds": one("claims_workers_process_cpu_seconds_total"),
                        "resident_bytes": one("claims_workers_process_resident_memory_bytes")},
        },
        "head": _int(one("claims_ledger_head_position")),
        "followers": [{"name": name, "position": int(position), "lag_events": int(lag_events.get(name, 0)),
                       "lag_seconds": round(lag_seconds.get(name, 0.0), 1)} for name, position in sorted(positions.items())],
        "checkpoint": None,
        "verification": None,
    }
    if one("claims_checkpoint_tree_size") is not None:
        picture["checkpoint"] = {"tree_size": _int(one("claims_checkpoint_tree_size")),
                                 "age_seconds": round(one("claims_checkpoint_age_seconds") or 0.0, 1)}
    if one("claims_verification_intact") is not None:
        verified_at = one("claims_verification_timestamp_seconds") or 0.0
        picture["verification"] = {"intact": one("claims_verification_intact") == 1,
                                   "events": _int(one("claims_verification_events")),
                                   "age_seconds": round(max(0.0, time.time() - verified_at), 1)}
    return picture


def from_database(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    snapshot, _ = read_snapshot(conn, wal_query=None)
    cp, v = snapshot.checkpoint, snapshot.verification
    return {
        "source": "database (the service's metrics endpoint did not answer: no health, processes or lag in seconds)",
        "health": None,
        "failing": [],
        "processes": None,
        "head": snapshot.head,
        "followers": [{"name": f.name, "position": f.position, "lag_events": f.lag_events, "lag_seconds": None}
                      for f in snapshot.followers],
        "checkpoint": None if cp is None else {"tree_size": cp.tree_size, "age_seconds": round(cp.age_seconds, 1)},
        "verification": None if v is None else {"intact": v.intact, "events": v.events, "age_seconds": round(v.age_seconds, 1),
                                                "problem": v.problem, "verified_by": v.verified_by},
    }


def render(picture: dict[str, Any]) -> str:
    lines = [f"source: {picture['source']}"]
    if picture["health"] is not None:
        failing = f" ({', '.join(picture['failing'])})" if picture["failing"] else ""
        lines.append(f"health: {picture['health']}{failing}")
    processes = picture["processes"]
    if processes is not None:
        server, workers = processes["server"], processes["workers"]
        lines.append(f"processes: server up{_usage(server)}; workers {'up' if workers['up'] else 'DOWN'},"
                     f" restarted {workers['restarts']} time(s){_usage(workers)}")
    lines.append(f"ledger head: position {picture['head']}")
    width = max([len("follower"), *(len(f["name"]) for f in picture["followers"])])
    lines.append(f"{'follower':<{width}}  {'position':>10}  {'lag events':>10}  {'lag s':>7}")
    for f in picture["followers"]:
        seconds = "-" if f["lag_seconds"] is None else f"{f['lag_seconds']:.1f}"
        lines.append(f"{f['name']:<{width}}  {f['position']:>10}  {f['lag_events']:>10}  {seconds:>7}")
    cp = picture["checkpoint"]
    lines.append("last checkpoint: none signed yet" if cp is None else
                 f"last checkpoint: {cp['tree_size']} leaves, signed {_ago(cp['age_seconds'])}")
    v = picture["verification"]
    if v is None:
        lines.append("last verification: none recorded (claimsctl verify)")
    else:
        outcome = "intact" if v["intact"] else "FAULT" + (f": {v['problem']}" if v.get("problem") else "")
        lines.append(f"last verification: {outcome}, {v['events']} events, {_ago(v['age_seconds'])}")
    return "\n".join(lines)


def _usage(process: dict[str, Any]) -> str:
    if process.get("cpu_seconds") is None:
        return ""
    memory = process.get("resident_bytes")
    return f" (CPU {process['cpu_seconds']:.1f} s" + (f", {memory / 2**20:.0f} MiB" if memory else "") + ")"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
