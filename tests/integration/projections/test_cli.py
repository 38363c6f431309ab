"""claimsctl projections status / rebuild, through the commands' own parser and functions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import psycopg

from bench.projections import generate_history
from claims_service.cli import projections as projection_commands
from claims_service.config import Config
from tests.integration.projections.helpers import drain, head, row_count


def run(database_url: str, tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="claimsctl")
    projection_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(Config(database_url=database_url, data_dir=tmp_path, grpc_addr="127.0.0.1:0"), args)


def test_status_shows_positions_head_and_lag_and_rebuild_swaps_in(database_url, tmp_path, capsys):
    generate_history(database_url, 300, seed=71, members=5)
    drain(database_url, ("claim_status",))
    end = head(database_url)
    assert run(database_url, tmp_path, "projections", "status", "--json") == 0
    status = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert status["claim_status"] == {"name": "claim_status", "position": end, "head": end, "lag": 0, "rebuild_position": None}
    assert status["payments"]["lag"] == end
    assert run(database_url, tmp_path, "projections", "rebuild", "payments") == 0
    assert f"swapped in at position {end}" in capsys.readouterr().out
    assert run(database_url, tmp_path, "projections", "status") == 0
    table = capsys.readouterr().out
    assert "payments" in table and "lag" in table


def test_drop_previous_removes_what_a_kept_rebuild_left(database_url, tmp_path, capsys):
    generate_history(database_url, 100, seed=72, members=3)
    drain(database_url, ("payments",))
    assert run(database_url, tmp_path, "projections", "rebuild", "payments", "--keep-previous") == 0
    assert row_count(database_url, "payments_previous") > 0
    assert run(database_url, tmp_path, "projections", "drop-previous", "payments") == 0
    assert "payments_previous" in capsys.readouterr().out.splitlines()[-1]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('payments_previous')").fetchone()[0] is None
    assert run(database_url, tmp_path, "projections", "drop-previous", "payments") == 0
    assert "no <table>_previous tables" in capsys.readouterr().out
