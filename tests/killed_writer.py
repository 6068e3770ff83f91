"""The leftovers of a process killed with SIGKILL in the middle of an atomic write."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

_KILLED_MID_WRITE = """
import os, sys
from digitlab.atomic import atomic_path
writing = atomic_path(sys.argv[1])
open(writing.__enter__(), "wb").write(b"half")
os.kill(os.getpid(), 9)
"""


def leave_temporary(target: Path) -> Path:
    """The temporary file a process killed with SIGKILL inside `atomic_path(target)` leaves."""
    before = set(target.parent.iterdir()) if target.parent.exists() else set()
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(target)], check=False)
    assert child.returncode == -signal.SIGKILL
    (left,) = set(target.parent.iterdir()) - before
    return left
