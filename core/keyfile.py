"""Small private files of key material: created once on first use, readable by their owner only.

The same discipline as the vault's key file and the player-token key (decisions 0012, 0014): the
file is created with mode 0600 in a 0700 directory, written to a temporary file, synced and
renamed into place under an exclusive `flock`, so two processes starting at once end with one
file; a file that group or others may access, or that is not a regular file, is refused.
"""

import contextlib
import fcntl
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import mkstemp


class KeyFileError(RuntimeError):
    """The key file is unsafe to use (permissions, not a regular file) or unreadable."""


def signature(path: Path) -> tuple[int, ...] | None:
    """What identifies the file's current content cheaply (None: no file yet); a change means
    the file was replaced and must be read again."""
    try:
        st = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    check_mode(path, st.st_mode)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """The file's content; on first use, `create()` is written first (once, whoever wins)."""
    if not os.path.lexists(path):
        with _locked(path):
            if not os.path.lexists(path):  # another process may have created it meanwhile
                _write(path, create())
    # O_NOFOLLOW and fstat check the very file that is read, not whatever the path pointed to
    # a moment earlier.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        check_mode(path, os.fstat(file.fileno()).st_mode)
        return file.read()


def check_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"the key file {path} is not a regular file")
    if mode & 0o077:
        raise KeyFileError(
            f"the key file {path} has mode {stat.S_IMODE(mode):o}: group or others may access "
            "it; refusing to use it (chmod 600 after checking it was not exposed)"
        )


def _write(path: Path, content: bytes) -> None:
    fd, temp = mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp creates the file with mode 0600
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # the umask may have narrowed mkdir's mode; never widen it
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
