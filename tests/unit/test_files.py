"""Private files: the data directory is made (or tightened to) owner only, files in it 0600, and a
file with member data is written 0600 from its first byte and replaced whole."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from claims_service.files import private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_is_owner_only_and_made_quietly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        made = private_dir(tmp_path / "nested" / "data")
    assert made.is_dir() and mode(made) == 0o700
    assert caplog.text == ""


def test_a_looser_data_directory_and_its_files_are_tightened_and_that_is_logged(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    bundle = data / "bundle-1.json"
    bundle.write_text("{}")
    os.chmod(bundle, 0o644)
    (data / "sub").mkdir()
    with caplog.at_level(logging.WARNING):
        private_dir(data)
    assert mode(data) == 0o700 and mode(bundle) == 0o600
    assert "was mode 755" in caplog.text and "bundle-1.json was readable by others" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        private_dir(data)  # already private: nothing to say
    assert caplog.text == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user takes root")
def test_another_users_directory_inside_can_be_passed_through_to_but_nothing_listed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "pg").mkdir(mode=0o700)
    os.chown(data / "pg", 65534, 65534)  # as the embedded PostgreSQL's own user owns its directory
    os.chmod(data, 0o755)
    private_dir(data, quiet=True)
    assert mode(data) == 0o711
    # One level further down too (a data directory that holds the database's parent directory).
    outer = tmp_path / "outer"
    (outer / "db").mkdir(parents=True)
    (data / "pg").rename(outer / "db" / "pg")
    private_dir(outer)
    assert mode(outer) == 0o711


def test_a_private_file_is_0600_and_replaced_whole(tmp_path):
    target = tmp_path / "bundle.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private(target, "new contents")
    assert target.read_text() == "new contents" and mode(target) == 0o600
    write_private(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]  # no temporary file left behind
