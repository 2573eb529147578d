"""Atomic writes: whole files or nothing, with the permissions of an ordinary write."""

from __future__ import annotations

import os
import stat

import pytest

from srcaco2.srdata.atomic import atomic_writer, write_text_atomic


def test_permissions_follow_the_umask_and_a_failure_leaves_the_old_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "one")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0o600
        with pytest.raises(RuntimeError, match="disk"):
            with atomic_writer(path, "w") as fh:
                fh.write("half of two")
                raise RuntimeError("disk full")
        assert path.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    finally:
        os.umask(old)


def test_checkpoints_are_readable_by_the_group(tmp_path):
    from srcaco2.trainers.checkpoints import save_checkpoint

    old = os.umask(0o022)
    try:
        for keep in (False, True):
            meta = {"method": "vdsr", "scale": 4}
            p = save_checkpoint(
                tmp_path / "last.pt", model_state={}, config={}, meta=meta, keep_previous=keep
            )
            assert stat.S_IMODE(p.stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "last.prev.pt").stat().st_mode) == 0o644
    finally:
        os.umask(old)
