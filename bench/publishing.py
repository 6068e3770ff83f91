"""Where a benchmark's figures go: printed, and with `write`, into docs/results.md under a
heading that names the machine (CPU, vector extensions, cores) and the date.

A rerun on the same machine replaces its own section; figures of other machines stay.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import resource
from pathlib import Path

from digitlab.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results.md"
_DATE = r"\d{4}-\d{2}-\d{2}"


def _cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags, from /proc/cpuinfo where there is one."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if value
    )
    name = fields.get("model name") or platform.processor() or platform.machine()
    return " ".join(name.split()), set(fields.get("flags", "").split())


def cpu_seconds() -> float:
    """The CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_label() -> str:
    """E.g. "AMD EPYC with AVX-512, 2 cores": the CPU, its widest vector units, the cores
    this process may use."""
    name, flags = _cpu_info()
    if "avx512f" in flags:
        vectors = " with AVX-512 and AMX" if "amx_tile" in flags else " with AVX-512"
    elif "avx2" in flags:
        vectors = " with AVX2 only"
    else:
        vectors = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}{vectors}, {cores} cores"


def replace_section(path: Path, title: str, machine: str, body: str) -> None:
    """Put `## title: machine, date` + `body` into the Markdown file, replacing only the
    section of the same title and machine (of any date)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Measured results\n"
    today = datetime.date.today().isoformat()
    section = f"## {title}: {machine}, {today}\n\n{body.strip()}\n"
    pattern = re.compile(
        rf"^## {re.escape(title)}: {re.escape(machine)}, {_DATE}\n.*?(?=^## |\Z)",
        re.DOTALL | re.MULTILINE,
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text.rstrip("\n") + "\n")


def publish(title: str, context: str, text: str, write: bool) -> None:
    """Print the table and its context; with `write`, put both into docs/results.md."""
    machine = machine_label()
    print(f"{text}\n\n{context}\n\n({machine}, {datetime.date.today().isoformat()})")
    if write:
        replace_section(RESULTS, title, machine, f"{context}\n\n{text}")
        print(f"\nwrote the '{title}: {machine}' section of {RESULTS}")
