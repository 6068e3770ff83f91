"""Atomic file writes: a crash at any moment leaves either the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`.

    The temporary file lives in the same folder so the final `os.replace` is atomic.
    On any exception (Ctrl-C included) the temporary file is removed and `target`
    is left untouched. The new file gets the old file's permissions (readable by its
    owner at least), or the usual ones for a new file (0o666 less the umask).
    """
    with atomic_paths([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(targets: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """`atomic_path` for several files that belong together: a temporary path for each,
    all renamed over their targets when the block ends without error, none if it raises.

    Every temporary is flushed to disk before the first rename, and a folder standing at
    a target is refused before any, so that the renames, done one after the other, fail
    only for reasons outside the program (a full disk is met before them).
    """
    paths = [Path(target) for target in targets]
    for path in paths:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    temporaries: list[Path] = []
    try:
        temporaries.extend(_temporary_beside(path) for path in paths)
        yield list(temporaries)
        for tmp, path in zip(temporaries, paths, strict=True):
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            # mkstemp creates the file private (0o600); a model or report should not be.
            os.chmod(tmp, _mode_for(path))
        for tmp, path in zip(temporaries, paths, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)


def _temporary_beside(target: Path) -> Path:
    """A new empty file in `target`'s folder (made if needed), named after `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(target)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


def stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """The temporary files `atomic_path(target)` left beside `target`, sorted.

    Only a process killed outright (kill -9, power loss) leaves one: any exception removes
    it. They are zero bytes or half written, so whoever owns `target` may delete them once
    no writer of it is running.
    """
    target = Path(target)
    prefix, suffix = _temporary_affixes(target)
    return sorted(target.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"))


def _temporary_affixes(target: Path) -> tuple[str, str]:
    """The start and end of the names `atomic_path` gives temporary files for `target`.

    The name starts with a dot (hidden) and keeps the target's suffixes, which some
    writers (Keras, numpy) insist on: `.best.tmp-k2j4x9_a.keras` for `best.keras`.
    """
    return f".{target.stem}.tmp-", "".join(target.suffixes) or ".tmp"


def _mode_for(target: Path) -> int:
    try:
        # Never copy a mode that hides the file from its owner: a cache rewritten as
        # mode 000 again would be unreadable, and so fetched again, on every load.
        return stat.S_IMODE(target.stat().st_mode) | stat.S_IRUSR
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))
