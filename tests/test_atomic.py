"""Atomic writes: a crash at any moment leaves the old file or the new one, never a mix."""

from __future__ import annotations

import os
import stat

import pytest

from digitlab.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_the_target_with_the_new_content(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "mnist.npz"
    target.write_bytes(b"the valid old cache")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a new ca")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"the valid old cache"
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.npz"]


def test_atomic_path_leaves_no_file_when_interrupted(tmp_path):
    target = tmp_path / "cache" / "mnist.npz"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_gives_a_new_file_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "model.keras", b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "model.keras").stat().st_mode) == 0o644


def test_atomic_write_keeps_an_existing_files_permissions(tmp_path):
    target = tmp_path / "run.sh"
    target.write_text("old")
    target.chmod(0o750)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_atomic_write_leaves_a_file_of_mode_000_readable_by_its_owner(tmp_path):
    target = tmp_path / "mnist.npz"
    target.write_bytes(b"old")
    target.chmod(0o000)
    atomic_write_bytes(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
