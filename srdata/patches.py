"""The released-patch layout of SR-CACO-2: file names, parsing, fold lists, scanning a release folder.

docs/protocol.md#patch-names to #split. A released data set is a folder holding::

    hr_div_1/tile_HighRes1024-{tile}_{pid}_{i}_{ii}_{j}_{jj}_{CELLk}.tif          512² uint8
    hr_div_{s}/tile_LowRes{1024/s}-{tile}_{pid}_{i/s}_{ii/s}_{j/s}_{jj/s}_{CELLk}.tif  (512/s)² uint8
    folds/caco2_{split}_X_{s}_in_{512/s}_out_512_cell_{CELLk}/h_l.txt   lines "HR,LR" (relative paths)
    folds/caco2_{split}_X_{s}_in_{512/s}_out_512_cell_{CELLk}/l_h.txt   lines "LR,HR"

``i, ii, j, jj`` are the rows then columns of the *640² window* (HR pixels, unregistered tile
coordinates; the file itself holds the central 512² patch), divided by ``s`` in LR names.
``pid`` restarts at 0 per tile. The original's fold folders sit under ``folds/super-resolution/``;
`find_fold_root` accepts both.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from srcaco2.srdata.schema import MARKERS, PATCH_SIZE, SCALES, SPLITS, WINDOW_SIZE, split_code

__all__ = [
    "PatchName",
    "PatchNameError",
    "HR_PATTERN",
    "LR_PATTERN",
    "scale_dir",
    "patch_name",
    "patch_relpath",
    "parse_patch_name",
    "fold_dir_name",
    "parse_fold_dir_name",
    "find_fold_root",
    "PatchesInputError",
    "window_key",
    "scan_patches",
    "read_fold_lists",
    "read_fold_order",
]

HR_PATTERN = "tile_HighRes1024-{tile}_{pid}_{i}_{ii}_{j}_{jj}_{CELLk}.tif"
LR_PATTERN = "tile_LowRes{1024/s}-{tile}_{pid}_{i/s}_{ii/s}_{j/s}_{jj/s}_{CELLk}.tif"

_NAME_RE = re.compile(
    r"^tile_(?P<kind>HighRes|LowRes)(?P<frame>\d+)-(?P<tile>\d+)_(?P<pid>\d+)_(?P<r0>\d+)_(?P<r1>\d+)_"
    r"(?P<c0>\d+)_(?P<c1>\d+)_(?P<marker>CELL\d)\.tif$"
)
_FOLD_RE = re.compile(
    r"^caco2_(?P<split>[a-z]+)_X_(?P<scale>\d+)_in_(?P<lr>\d+)_out_(?P<hr>\d+)_cell_(?P<marker>CELL\d)$"
)


window_key = tuple[int, int, int]
"""(tile, y0, x0) of a window, HR px."""


class PatchNameError(ValueError):
    """A file or folder name does not follow the released-patch layout (message names both)."""


@dataclasses.dataclass(frozen=True, order=True)
class PatchName:
    """One released patch file, identified by its name.

    Attributes
    ----------
    tile : int
        Tile id.
    pid : int
        Per-tile patch id.
    y0, x0 : int
        Top-left of the 640² window, **HR pixels** (the name of an LR file holds them divided by
        `scale`; this class always stores HR coordinates).
    size : int
        Window side, HR pixels (640).
    marker : str
        ``CELL0``, ``CELL1`` or ``CELL2``.
    scale : int
        1 for HR, else 2, 4 or 8.
    """

    tile: int
    pid: int
    y0: int
    x0: int
    size: int
    marker: str
    scale: int

    @property
    def filename(self) -> str:
        return patch_name(self.tile, self.pid, self.y0, self.x0, self.marker, self.scale, size=self.size)

    @property
    def relpath(self) -> str:
        return f"{scale_dir(self.scale)}/{self.filename}"


def scale_dir(scale: int) -> str:
    """``hr_div_{scale}`` (``hr_div_1`` for HR)."""
    if scale != 1 and scale not in SCALES:
        raise ValueError(f"scale must be 1 or one of {list(SCALES)}, got {scale!r}")
    return f"hr_div_{int(scale)}"


def patch_name(
    tile: int, pid: int, y0: int, x0: int, marker: str, scale: int, *, size: int = WINDOW_SIZE
) -> str:
    """File name of a released patch (docs/protocol.md#patch-names).

    Parameters
    ----------
    tile, pid : int
        Tile id and per-tile patch id.
    y0, x0 : int
        Top-left of the 640² window, HR pixels (divided by `scale` in the name).
    marker : str
        ``CELLk``.
    scale : int
        1 (HR, ``tile_HighRes1024-...``) or 2, 4, 8 (``tile_LowRes{1024/s}-...``).
    size : int
        Window side, HR pixels.

    Examples
    --------
    >>> patch_name(7, 3, 256, 512, "CELL2", 4)
    'tile_LowRes256-7_3_64_224_128_288_CELL2.tif'
    """
    s = int(scale)
    scale_dir(s)
    if marker not in MARKERS:
        raise ValueError(f"marker must be one of {list(MARKERS)}, got {marker!r}")
    kind = "HighRes1024" if s == 1 else f"LowRes{1024 // s}"
    r0, r1, c0, c1 = y0 // s, (y0 + size) // s, x0 // s, (x0 + size) // s
    return f"tile_{kind}-{int(tile)}_{int(pid)}_{r0}_{r1}_{c0}_{c1}_{marker}.tif"


def patch_relpath(tile: int, pid: int, y0: int, x0: int, marker: str, scale: int) -> str:
    """``hr_div_{s}/<patch_name>``, the path relative to the patches root (as fold lists hold it)."""
    return f"{scale_dir(scale)}/{patch_name(tile, pid, y0, x0, marker, scale)}"


def parse_patch_name(name: str, *, scale: int | None = None) -> PatchName:
    """Parse a released patch file name (a bare name or a ``hr_div_s/name`` relative path).

    Parameters
    ----------
    name : str
        File name or relative path.
    scale : int, optional
        Expected scale (from the folder); checked against the name's frame size.

    Returns
    -------
    PatchName
        With HR-pixel window coordinates.

    Raises
    ------
    PatchNameError
        Naming the file and the expected pattern, when the name does not parse, the frame size is
        not one of 1024/512/256/128, the window is not ``640/s`` wide, or the folder disagrees.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    m = _NAME_RE.match(base)
    expected = (
        f"expected {HR_PATTERN} (in hr_div_1/) or {LR_PATTERN} (in hr_div_s/), integers, CELLk in {MARKERS}; "
        "rename the file to that pattern or move it out of the patch folders"
    )
    if m is None:
        raise PatchNameError(f"{name}: not a released patch name; {expected}")
    frame = int(m["frame"])
    if m["kind"] == "HighRes":
        s = 1 if frame == 1024 else -1
    else:
        s = 1024 // frame if frame in (512, 256, 128) else -1
    if s < 0:
        raise PatchNameError(f"{name}: frame size {m['kind']}{frame} is unknown; {expected}")
    if scale is not None and s != scale:
        raise PatchNameError(f"{name}: the name says scale {s} but the file sits in {scale_dir(scale)}/")
    marker = m["marker"]
    if marker not in MARKERS:
        raise PatchNameError(f"{name}: marker {marker} is not one of {list(MARKERS)}; {expected}")
    r0, r1, c0, c1 = (int(m[k]) for k in ("r0", "r1", "c0", "c1"))
    if r1 - r0 != WINDOW_SIZE // s or c1 - c0 != WINDOW_SIZE // s:
        raise PatchNameError(
            f"{name}: window {r0}:{r1} x {c0}:{c1} is not {WINDOW_SIZE // s} px wide "
            f"(a {WINDOW_SIZE}² HR window / {s}); {expected}"
        )
    return PatchName(int(m["tile"]), int(m["pid"]), r0 * s, c0 * s, WINDOW_SIZE, marker, s)


def fold_dir_name(split: str, scale: int, marker: str) -> str:
    """``caco2_{split}_X_{s}_in_{512/s}_out_512_cell_{CELLk}`` (docs/protocol.md#split)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    if marker not in MARKERS:
        raise ValueError(f"marker must be one of {list(MARKERS)}, got {marker!r}")
    return f"caco2_{split}_X_{scale}_in_{PATCH_SIZE // scale}_out_{PATCH_SIZE}_cell_{marker}"


def parse_fold_dir_name(name: str) -> tuple[str, int, str] | None:
    """``(split, scale, marker)`` of a fold folder name, or None when the name is not one."""
    m = _FOLD_RE.match(name)
    if m is None:
        return None
    split, scale, marker = m["split"], int(m["scale"]), m["marker"]
    if split not in SPLITS or scale not in SCALES or marker not in MARKERS:
        return None
    if int(m["lr"]) != PATCH_SIZE // scale or int(m["hr"]) != PATCH_SIZE:
        return None
    return split, scale, marker


def find_fold_root(path: str | Path) -> Path | None:
    """The folder that directly holds ``caco2_*`` fold folders: `path`, ``path/super-resolution``,
    ``path/folds`` or ``path/folds/super-resolution``; None if there is none."""
    base = Path(path)
    for cand in (base, base / "super-resolution", base / "folds", base / "folds" / "super-resolution"):
        if cand.is_dir() and any(parse_fold_dir_name(p.name) for p in cand.iterdir() if p.is_dir()):
            return cand
    return None


class PatchesInputError(ValueError):
    """A released-patch folder that cannot be imported; the message names the file and the fix."""


def _tif_names(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def scan_patches(patches: str | os.PathLike) -> tuple[dict[window_key, int], list[str], list[int]]:
    """Find and check every patch file of a released-patch folder.

    Returns
    -------
    (windows, markers, scales)
        ``windows`` maps (tile, y0, x0) (HR px) to the name's pid; the markers (canonical order)
        and LR scales present.

    Raises
    ------
    PatchesInputError
        No ``hr_div_1/`` or no LR folder, a missing LR (or HR) file for a window, a window
        named with two pids.
    PatchNameError
        A malformed file name (the message names it and the expected pattern).
    """
    base = Path(patches)
    if not (base / "hr_div_1").is_dir():
        raise PatchesInputError(
            f"{base}: no hr_div_1/ folder; PATCHES must be the released-patch root holding hr_div_1/, "
            "hr_div_2/, hr_div_4/, hr_div_8/ (and folds/)"
        )
    scales = [s for s in SCALES if (base / f"hr_div_{s}").is_dir() and _tif_names(base / f"hr_div_{s}")]
    if not scales:
        raise PatchesInputError(
            f"{base}: no hr_div_2/, hr_div_4/ or hr_div_8/ folder with patches; nothing to pair"
        )
    files: dict[int, dict[tuple[int, int, int, str], PatchName]] = {}
    for s in (1, *scales):
        found = {}
        for n in _tif_names(base / f"hr_div_{s}"):
            p = parse_patch_name(f"hr_div_{s}/{n}", scale=s)
            found[(p.tile, p.y0, p.x0, p.marker)] = p
        files[s] = found
    if not files[1]:
        raise PatchesInputError(f"{base / 'hr_div_1'}: holds no patch files")
    markers = [m for m in MARKERS if any(k[3] == m for k in files[1])]
    windows: dict[window_key, int] = {}
    for (t, y0, x0, _m), p in files[1].items():
        if windows.setdefault((t, y0, x0), p.pid) != p.pid:
            raise PatchesInputError(
                f"{base}: window tile {t} y0={y0} x0={x0} is named with pids "
                f"{windows[(t, y0, x0)]} and {p.pid} ({p.relpath}); remove the stray file"
            )
    missing = []
    for (t, y0, x0), pid in sorted(windows.items()):
        for s in (1, *scales):
            for m in markers:
                p = files[s].get((t, y0, x0, m))
                want = PatchName(t, pid, y0, x0, WINDOW_SIZE, m, s)
                if p is None or p.pid != pid:
                    missing.append(
                        f"{want.relpath} (for {PatchName(t, pid, y0, x0, WINDOW_SIZE, m, 1).relpath})"
                    )
    for s in scales:
        for key, p in files[s].items():
            if key not in files[1]:
                hr_name = PatchName(p.tile, p.pid, p.y0, p.x0, WINDOW_SIZE, p.marker, 1).relpath
                missing.append(f"{hr_name} (for {p.relpath})")
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PatchesInputError(
            f"{base}: {len(missing)} patch file(s) missing: {'; '.join(missing[:5])}{more}; every HR patch "
            f"needs its LR patches at scales {scales} and markers {markers} "
            "(restore them or remove the window)"
        )
    return windows, markers, scales


def read_fold_lists(
    fold_root: str | os.PathLike, windows: dict[window_key, int], markers: list[str], scales: list[int]
) -> dict[window_key, int]:
    """Split code of every window listed in the ``caco2_*/h_l.txt`` fold lists under `fold_root`.

    See `read_fold_order` for the line of each window as well; same checks, same errors.
    """
    return {k: code for k, (code, _line) in read_fold_order(fold_root, windows, markers, scales).items()}


def read_fold_order(
    fold_root: str | os.PathLike, windows: dict[window_key, int], markers: list[str], scales: list[int]
) -> dict[window_key, tuple[int, int]]:
    """``(split code, fold line)`` of every window listed in the ``caco2_*`` fold lists.

    The fold line is the window's 0-based position among the non-empty lines of the first fold list
    of its split that names it (folders in sorted order; the official lists order every marker and
    scale of a split identically). Training validates on the first lines of the val list.

    Raises
    ------
    PatchesInputError
        A fold line that does not parse, pairs different windows, names a patch that is not in the
        patches folder, or a window listed in two splits.
    """
    splits: dict[window_key, tuple[int, int]] = {}
    root = Path(fold_root)
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        parsed = parse_fold_dir_name(d.name)
        if parsed is None:
            continue
        split, s, m = parsed
        hl, lh = d / "h_l.txt", d / "l_h.txt"
        path, hr_first = (hl, True) if hl.exists() else (lh, False)
        if not path.exists():
            raise PatchesInputError(f"{d}: has neither h_l.txt nor l_h.txt")
        position = -1
        for ln, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            position += 1
            parts = [x.strip() for x in line.split(",")]
            where = f"{path}:{ln}"
            if len(parts) != 2:
                raise PatchesInputError(
                    f"{where}: expected 'hr_div_1/<name>.tif,hr_div_{s}/<name>.tif', got {line!r}"
                )
            a, b = parts if hr_first else parts[::-1]
            try:
                hr, lr = parse_patch_name(a, scale=1), parse_patch_name(b, scale=s)
            except PatchNameError as exc:
                raise PatchNameError(f"{where}: {exc}") from None
            if (hr.tile, hr.pid, hr.y0, hr.x0, hr.marker) != (
                lr.tile,
                lr.pid,
                lr.y0,
                lr.x0,
                lr.marker,
            ) or hr.marker != m:
                raise PatchesInputError(f"{where}: pairs {a} with {b}, which are not the same {m} window")
            key = (hr.tile, hr.y0, hr.x0)
            if windows.get(key) != hr.pid or m not in markers or s not in scales:
                raise PatchesInputError(f"{where}: names {a} / {b}, which are not in the patches folder")
            code = split_code(split)
            if splits.setdefault(key, (code, position))[0] != code:
                raise PatchesInputError(
                    f"{where}: window {a} is also listed in another split; fix the fold lists"
                )
    return splits
