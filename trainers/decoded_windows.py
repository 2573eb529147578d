"""The eval windows of one (store, split, marker, scale), decoded once and replayed for every model.

`decode_windows` runs the loader once; `DecodedWindows` yields exactly the loader's batches on
every pass (`srcaco2.trainers.eval_runs` scores many runs on them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DecodedWindows", "decode_windows"]


class DecodedWindows:
    """The eval batches of one (store, split, marker, scale), decoded once and replayable.

    Held compactly (``lr``/``hr`` as uint8, the provenance columns as int64 tensors; the ROI mask
    is not kept: the metrics derive it from the ground truth) and turned back into the loader's
    float32 batches (``uint8 / 255``, `srcaco2.srdata.transforms.to_float`) on every iteration, so each
    pass yields exactly the batches the loader yielded. Iterate it as many times as needed
    (one pass per evaluated model).

    Attributes
    ----------
    store, split, marker, scale, batch_size : what was decoded
    n_windows : int
        Windows over all batches.
    """

    def __init__(
        self,
        batches: list[dict[str, Any]],
        *,
        store: str,
        split: str,
        marker: str,
        scale: int,
        batch_size: int,
    ) -> None:
        self._batches = batches
        self.store, self.split, self.marker = store, split, marker
        self.scale, self.batch_size = int(scale), int(batch_size)
        self.n_windows = sum(int(b["hr"].shape[0]) for b in batches)

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import numpy as np
        import torch

        from srcaco2.srdata.transforms import to_float

        for raw in self._batches:
            if raw["hr"].dtype == np.uint8:
                yield to_float(raw)
            else:  # a uint16 store's windows are kept as the loader's float32 (its intensity scaling)
                yield {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in raw.items()}

    @property
    def batch_sizes(self) -> list[int]:
        """Windows in each batch, in order."""
        return [int(b["hr"].shape[0]) for b in self._batches]

    @property
    def nbytes(self) -> int:
        """Bytes held (pixels and columns)."""
        return sum(int(getattr(v, "nbytes", 0)) for b in self._batches for v in b.values())

    def __repr__(self) -> str:
        return (
            f"DecodedWindows({self.store!r}, split={self.split!r}, marker={self.marker!r}, "
            f"scale={self.scale}, windows={self.n_windows}, batches={len(self)})"
        )


def decode_windows(
    store: str | Path,
    *,
    split: str,
    marker: str,
    scale: int,
    batch_size: int = 1,
    max_windows: int | None = None,
) -> DecodedWindows:
    """Decode every eval window of a split once (whole 512² patches, index order).

    Parameters
    ----------
    store : path of a store built by ``srdata build``
    split, marker, scale : the windows (``scale`` 2, 4 or 8)
    batch_size : int
        Windows per batch; the batch composition matters for networks that draw random numbers
        in forward (NLSN: torch is seeded once per batch), so `srtrain eval` and `eval-runs` use
        the same default (1).
    max_windows : int, optional
        Only the first N windows of the split.

    Returns
    -------
    DecodedWindows
        Batches ``lr`` (B, 1, 512/s, 512/s), ``hr`` (B, 1, 512, 512) float32 in [0, 1] and
        ``tile``, ``window``, ``y0``, ``x0`` (B,) int64 when iterated.

    Raises
    ------
    ValueError
        The split has no windows for this marker and scale, or the store's pixels are not 8-bit
        levels (the loader's ``uint8 / 255``).
    """
    import numpy as np

    from srcaco2.srdata.loader import make_loader

    loader = make_loader(
        str(store), split=split, scale=int(scale), marker=marker, batch_size=batch_size, h_size=512,
        mode="eval", max_windows=max_windows,
    )  # fmt: skip
    batches: list[dict[str, Any]] = []
    eight_bit = loader.dataset.dtype == np.uint8
    try:
        for batch in loader:
            raw: dict[str, Any] = {}
            for k in ("lr", "hr"):
                x = batch[k].numpy()
                if not eight_bit:
                    raw[k] = x.copy()
                    continue
                u = np.round(x * np.float32(255)).astype(np.uint8)
                if not np.array_equal(np.divide(u, np.float32(255), dtype=np.float32), x):
                    raise ValueError(
                        f"{store}: {k} pixels of split {split!r} ({marker}, x{scale}) are not 8-bit levels "
                        "(uint8 / 255); this store cannot be evaluated with decoded-once windows"
                    )
                raw[k] = u
            for k in ("tile", "window", "y0", "x0"):
                raw[k] = batch[k].clone()
            batches.append(raw)
    finally:
        loader.close()
    if not batches:
        raise ValueError(
            f"split {split!r} of store {store} has no windows for marker {marker}, scale {scale}"
        )
    return DecodedWindows(
        batches, store=str(store), split=split, marker=marker, scale=int(scale), batch_size=batch_size
    )
