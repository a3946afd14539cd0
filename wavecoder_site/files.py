"""Files and folders only their owner may read: the database, the secret key, uploads, demo passwords.

Plain Python (no Django), so the settings module can use it before Django is set up. Everything is created
private from the start (the mode given to mkdir/open, not a chmod afterwards), so there is no moment at
which another user of the machine could open it; what an older installation left readable is tightened.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _owned(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.getuid()
    except OSError:
        return False


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) with mode 0700; an existing folder of ours loses world access
    (group access is left alone, for installations that share the folder with a group on purpose)."""
    path = Path(path)
    existed = path.is_dir()
    if not existed and not path.parent.exists():
        private_dir(path.parent)  # mkdir(parents=True) would make the parents with the umask's mode
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    if existed and _owned(path):
        _drop_bits(path, 0o007)
    return path


def make_private(path: Path) -> None:
    """An existing file of ours: no access for group or others (an older installation made it 0644)."""
    path = Path(path)
    if path.is_file() and _owned(path):
        _drop_bits(path, 0o077)


def _drop_bits(path: Path, bits: int) -> None:
    mode = path.stat().st_mode & 0o7777
    if mode & bits:
        try:
            os.chmod(path, mode & ~bits)
        except OSError:  # a file system without modes: nothing to tighten
            pass


def create_private(path: Path, data: bytes = b"") -> bool:
    """Create `path` with mode 0600 holding `data`, atomically: False when it exists already (and is then
    left as it is). Written to a 0600 temporary file first and linked into place (link fails when the name
    exists), so another process sees either no file or the whole of it, and two cannot both create it."""
    path = Path(path)
    if path.exists():  # the usual case, and it needs no write access to the folder
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: O_EXCL still makes it private at once
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def open_private(path: Path):
    """A new file opened for writing (binary), mode 0600; FileExistsError when `path` exists."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), "wb")


def write_private(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` atomically (a 0600 temporary file beside it, then renamed over it)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
