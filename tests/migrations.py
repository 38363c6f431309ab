"""A database as it stood before a migration, for the tests of what that migration does to data
written before it."""

from __future__ import annotations

import shutil
from pathlib import Path

from claims_service.migrate import MIGRATIONS_DIR, migrate


def migrate_before(database_url: str, first_left_out: str, directory: Path) -> None:
    """Apply every migration whose file name sorts before ``first_left_out`` ("0030"), copied into
    ``directory`` (which must not exist yet)."""
    directory.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < first_left_out:
            shutil.copy(path, directory / path.name)
    migrate(database_url, directory)
