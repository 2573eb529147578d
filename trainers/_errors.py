"""Errors shared by the checkpoint readers (`checkpoints`, `_pretrained`, `export.readback`)."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A file is not a usable checkpoint (wrong format, truncated, not weights-only, mismatch)."""
