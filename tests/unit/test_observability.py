"""The pure parts of observability: JSON log lines, and how the progress monitor turns readings
into lag in seconds and health."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from claims_service.observability import logs, metrics, progress
from claims_service.observability.progress import Follower, ProgressMonitor, Snapshot


def test_a_json_line_holds_the_call_and_the_principal_and_nothing_else_of_the_record():
    formatter = logs.JsonFormatter("server")
    record = logging.LogRecord("claims_service.api", logging.INFO, __file__, 1, "call method=%s code=%s",
                               ("/claims.v1.ProviderService/SubmitClaim", "OK"), None)
    record.__dict__.update(rpc="/claims.v1.ProviderService/SubmitClaim", code="OK", ms=1.5, role="provider",
                           party="1234567893", member_id="M-1001", api_key="ck_secret")  # the last two never go out
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "call method=/claims.v1.ProviderService/SubmitClaim code=OK"
    assert {k: entry[k] for k in ("level", "logger", "process", "rpc", "code", "ms", "role", "party")} == {
        "level": "info", "logger": "claims_service.api", "process": "server", "rpc": "/claims.v1.ProviderService/SubmitClaim",
        "code": "OK", "ms": 1.5, "role": "provider", "party": "1234567893"}
    assert "M-1001" not in json.dumps(entry) and "ck_secret" not in json.dumps(entry)
    assert entry["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(failed))["error"]


def test_metrics_are_no_ops_until_configured():
    off = metrics.Metrics(enabled=False)
    off.rpc_calls.labels("s", "m", "OK").inc()
    off.observe_committed([object()])
    assert not off.enabled and off.registry is None


def snapshot(head: int, **positions: int) -> Snapshot:
    return Snapshot(0.0, head, tuple(Follower(name.replace("__", "."), p, head - p, None) for name, p in positions.items()),
                    0, None, None)


def test_lag_in_seconds_counts_from_when_the_head_first_passed_a_follower_and_health_follows(monkeypatch):
    clock = [100.0]
    readings: list[Snapshot] = []
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress, "read_snapshot", lambda conn, **_: (readings.pop(0), 0))
    told: list[tuple[bool, str]] = []
    monitor = ProgressMonitor("unused", max_lag_seconds=5.0, on_health=lambda ok, why: told.append((ok, why)))

    def at(t: float, reading: Snapshot) -> dict[str, Follower]:
        clock[0] = t
        readings.append(reading)
        return {f.name: f for f in monitor.sample(None).followers}

    seen = at(100, snapshot(10, adjudicator=10, projection__claim_status=10))
    assert seen["adjudicator"].lag_seconds == 0 and told == [(True, "")]
    seen = at(101, snapshot(20, adjudicator=10, projection__claim_status=20))
    assert seen["adjudicator"].lag_seconds == 0  # the head passed it at this very reading
    seen = at(104, snapshot(30, adjudicator=10, projection__claim_status=30, projection__claim_status__rebuild=0))
    assert seen["adjudicator"].lag_seconds == 3 and seen["adjudicator"].lag_events == 20
    assert seen["projection.claim_status.rebuild"].lag_seconds == 4  # behind since the first reading
    assert told == [(True, "")]
    at(107, snapshot(30, adjudicator=15, projection__claim_status=30, projection__claim_status__rebuild=0))
    assert told[-1][0] is False and "adjudicator is 6 s behind" in told[-1][1]
    assert "rebuild" not in told[-1][1]  # a rebuild catching up beside the live projection does not count
    at(108, snapshot(30, adjudicator=30, projection__claim_status=30, projection__claim_status__rebuild=0))
    assert told[-1] == (True, "")


def test_a_lag_in_events_counts_only_when_configured(monkeypatch):
    readings = [snapshot(100, adjudicator=0), snapshot(100, adjudicator=0)]
    monkeypatch.setattr(progress, "read_snapshot", lambda conn, **_: (readings.pop(0), 0))
    told: list[bool] = []
    ProgressMonitor("unused", max_lag_seconds=60, on_health=lambda ok, _: told.append(ok)).sample(None)
    ProgressMonitor("unused", max_lag_seconds=60, max_lag_events=50, on_health=lambda ok, _: told.append(ok)).sample(None)
    assert told == [True, False]


@pytest.mark.parametrize("addr", ["", "9464", "host:", ":9464x", "host:70000"])
def test_a_metrics_address_is_host_and_port(addr):
    with pytest.raises(ValueError):
        metrics.parse_addr(addr)
    assert metrics.parse_addr("[::1]:9464") == ("::1", 9464)


def test_every_metric_the_dashboard_plots_is_in_the_operations_table():
    from pathlib import Path
    import re

    root = Path(__file__).resolve().parents[2]
    table = (root / "docs" / "OPERATIONS.md").read_text()
    dashboard = json.loads((root / "docs" / "grafana" / "claims-ledger.json").read_text())
    plotted = {re.sub(r"_(bucket|sum|count)$", "", name)
               for panel in dashboard["panels"] for target in panel.get("targets", ())
               for name in re.findall(r"claims_[a-z_]+", target["expr"])}
    plotted -= {name for name in plotted if name.startswith(("claims_server_process", "claims_workers_process"))}
    missing = [name for name in sorted(plotted) if f"`{name}`" not in table and name not in table]
    assert plotted and missing == []
