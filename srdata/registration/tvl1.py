"""TV-L1 optical flow compiled with numba: ``skimage.registration.optical_flow_tvl1``, same numbers.

The algorithm, its default parameters and its quirks are skimage's (0.26, 2-D float32 inputs):

- the coarse-to-fine pyramid (``skimage.transform.pyramid_reduce`` by 2 while the smaller side
  is > 32 px, at most 10 levels) and the nearest-neighbour flow upsampling between levels
  (``scipy.ndimage.zoom(order=0, mode="nearest")`` times the size ratio) are computed with the very
  same public skimage/scipy functions, so both implementations solve on identical images;
- per level, `num_warp` warps of the moving image (bilinear, edge mode: ``skimage.transform.warp``
  ``order=1, mode="edge"``, i.e. ``scipy.ndimage.map_coordinates`` in float64 with clamped
  coordinates, then clipped to the image range), ``np.gradient`` central differences, and
  `num_iter` fixed-point iterations of the data term and of the dual (Chambolle) projection with
  2 inner iterations, forward differences and the matching backward divergence;
- the stopping test after each warp compares the final flow with the flow *after the first data
  step of that warp* (skimage's ``flow_previous`` aliases ``flow_current`` in-place), summed with
  NumPy in float32, exactly as skimage does.

The inner loops run in float32 in skimage's operation order (no fast-math), so the flow agrees with
skimage's to the last bit on almost every input checked (1,801 of 1,803 640² estimates in
benchmarks/build.py; the other two differ by < 5e-4 px, with the same rounded mean flow), and the
rounded mean flow - the shift a store keeps - agrees (benchmarks/build.py measures the agreement rate and the
speed-up; tests/srdata_build/test_registration.py checks a reduced set). Compiled functions are
``cache=True`` (compiled once per machine, ~6-8 s, then loaded from the numba cache) and
``nogil=True`` (threads run estimates in parallel). No ``parallel=``: the build runs many windows
at once, which scales better than splitting one 640² estimate over threads.

The numba cache lives next to this file when the package directory is writable, else in the
user-wide cache dir numba picks, else (read-only home, e.g. a container) in
``$TMPDIR/srcaco2-numba-cache``; ``NUMBA_CACHE_DIR`` set by the user always wins.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np


def _ensure_cache_dir() -> None:
    """Point numba's cache at a writable directory if neither the package dir nor ``~`` is."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if os.access(here, os.W_OK):
        return
    home_cache = os.path.join(os.path.expanduser("~"), ".cache")
    if os.access(home_cache if os.path.isdir(home_cache) else os.path.expanduser("~"), os.W_OK):
        return  # numba's user-wide locator works
    path = os.path.join(tempfile.gettempdir(), "srcaco2-numba-cache")
    os.makedirs(path, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = path
    try:
        from numba.core import config

        config.CACHE_DIR = path  # numba may already be imported (config read at import)
    except ImportError:  # pragma: no cover - numba is a dependency
        pass


_ensure_cache_dir()

import numba  # noqa: E402 - after the cache dir is settled

__all__ = ["optical_flow_tvl1", "warp_edge_bilinear"]

_JIT = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


@numba.njit(**_JIT)
def _warp_into(img: np.ndarray, fy: np.ndarray, fx: np.ndarray, out: np.ndarray) -> None:
    """``warp(img, grid + flow, order=1, mode="edge")``: bilinear in float64, clamped coordinates,
    cast to float32, clipped to [img.min(), img.max()]."""
    m, n = img.shape
    lo = img[0, 0]
    hi = img[0, 0]
    for i in range(m):
        for j in range(n):
            v = img[i, j]
            lo = min(lo, v)
            hi = max(hi, v)
    ymax = np.float64(m - 1)
    xmax = np.float64(n - 1)
    for i in range(m):
        fi = np.float32(i)
        for j in range(n):
            # coordinates as skimage builds them: float32 flow + float32 grid, then float64
            cy = np.float64(fy[i, j] + fi)
            cx = np.float64(fx[i, j] + np.float32(j))
            cy = min(max(cy, 0.0), ymax)
            cx = min(max(cx, 0.0), xmax)
            y0 = int(np.floor(cy))
            x0 = int(np.floor(cx))
            ty = cy - y0
            tx = cx - x0
            y1 = min(y0 + 1, m - 1)
            x1 = min(x0 + 1, n - 1)
            wy0 = 1.0 - ty
            wx0 = 1.0 - tx
            acc = 0.0
            acc += np.float64(img[y0, x0]) * wy0 * wx0
            acc += np.float64(img[y0, x1]) * wy0 * tx
            acc += np.float64(img[y1, x0]) * ty * wx0
            acc += np.float64(img[y1, x1]) * ty * tx
            r = np.float32(acc)
            out[i, j] = min(max(r, lo), hi)


@numba.njit(**_JIT)
def _gradient_into(img: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> None:
    """``np.gradient(img)`` (float32; central differences, one-sided at the edges)."""
    m, n = img.shape
    two = np.float32(2.0)
    for j in range(n):
        gy[0, j] = img[1, j] - img[0, j]
        gy[m - 1, j] = img[m - 1, j] - img[m - 2, j]
    for i in range(1, m - 1):
        for j in range(n):
            gy[i, j] = (img[i + 1, j] - img[i - 1, j]) / two
    for i in range(m):
        gx[i, 0] = img[i, 1] - img[i, 0]
        gx[i, n - 1] = img[i, n - 1] - img[i, n - 2]
        for j in range(1, n - 1):
            gx[i, j] = (img[i, j + 1] - img[i, j - 1]) / two


@numba.njit(**_JIT)
def _solve_warp(
    ref: np.ndarray,
    warped: np.ndarray,
    flow: np.ndarray,
    aux: np.ndarray,
    first: np.ndarray,
    proj: np.ndarray,
    gy: np.ndarray,
    gx: np.ndarray,
    ni: np.ndarray,
    rho0: np.ndarray,
    num_iter: int,
    f0: np.float32,
    f1: np.float32,
    dt: np.float32,
) -> None:
    """One warp of skimage's ``_tvl1``: `num_iter` data + regularisation steps on `flow` in place.

    ``flow``, ``aux``, ``first``: (2, M, N) float32; ``proj``: (2, 2, M, N) float32 (persists across
    the warps of a level); ``first`` receives the flow after the first data step (the stopping test).
    """
    m, n = ref.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    _gradient_into(warped, gy, gx)
    for i in range(m):
        for j in range(n):
            a = gy[i, j]
            b = gx[i, j]
            s = a * a + b * b
            ni[i, j] = one if s == zero else s
            rho0[i, j] = (warped[i, j] - ref[i, j]) - (a * flow[0, i, j] + b * flow[1, i, j])
    for it in range(num_iter):
        # data term: aux = flow - step; the regularisation starts from a copy of aux
        for i in range(m):
            for j in range(n):
                a = gy[i, j]
                b = gx[i, j]
                u0 = flow[0, i, j]
                u1 = flow[1, i, j]
                rho = rho0[i, j] + (a * u0 + b * u1)
                nij = ni[i, j]
                if abs(rho) <= f0 * nij:
                    u0 = u0 - rho * a / nij
                    u1 = u1 - rho * b / nij
                else:
                    sg = one if rho > zero else (-one if rho < zero else zero)
                    srho = f0 * sg
                    u0 = u0 - srho * a
                    u1 = u1 - srho * b
                aux[0, i, j] = u0
                aux[1, i, j] = u1
                flow[0, i, j] = u0
                flow[1, i, j] = u1
        if it == 0:
            first[:] = aux
        for c in range(2):
            _dual_primal(flow[c], aux[c], proj[c, 0], proj[c, 1], f1, dt)


@numba.njit(**_JIT)
def _dual_row(
    r0: np.ndarray, r1: np.ndarray, q0: np.ndarray, q1: np.ndarray, f1: np.float32, dt: np.float32, last: bool
) -> None:
    """Dual update of one row: forward differences of the flow rows `r0` (this) and `r1` (next)."""
    n = r0.shape[0]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if last:
        for j in range(n - 1):
            g1 = r0[j + 1] - r0[j]
            nrm = np.sqrt(zero * zero + g1 * g1) * f1 + one
            q0[j] = (q0[j] - dt * zero) / nrm
            q1[j] = (q1[j] - dt * g1) / nrm
        g0 = zero
    else:
        for j in range(n - 1):
            g0 = r1[j] - r0[j]
            g1 = r0[j + 1] - r0[j]
            nrm = np.sqrt(g0 * g0 + g1 * g1) * f1 + one
            q0[j] = (q0[j] - dt * g0) / nrm
            q1[j] = (q1[j] - dt * g1) / nrm
        g0 = r1[n - 1] - r0[n - 1]
    nrm = np.sqrt(g0 * g0 + zero * zero) * f1 + one
    q0[n - 1] = (q0[n - 1] - dt * g0) / nrm
    q1[n - 1] = (q1[n - 1] - dt * zero) / nrm


@numba.njit(**_JIT)
def _dual_primal_row(
    fc: np.ndarray, ac: np.ndarray, p0: np.ndarray, p1: np.ndarray, f1: np.float32, dt: np.float32, i: int
) -> None:
    """Dual then primal update of row `i` of one flow component (skimage's projection step)."""
    m, n = fc.shape
    _dual_row(fc[i], fc[min(i + 1, m - 1)], p0[i], p1[i], f1, dt, i == m - 1)
    q0 = p0[i]
    q1 = p1[i]
    a = ac[i]
    f = fc[i]
    if i > 0:
        u = p0[i - 1]
        f[0] = a[0] + (-(q0[0] + q1[0]) + u[0])
        for j in range(1, n):
            f[j] = a[j] + ((-(q0[j] + q1[j]) + u[j]) + q1[j - 1])
    else:
        f[0] = a[0] + -(q0[0] + q1[0])
        for j in range(1, n):
            f[j] = a[j] + (-(q0[j] + q1[j]) + q1[j - 1])


@numba.njit(**_JIT)
def _dual_primal(
    fc: np.ndarray, ac: np.ndarray, p0: np.ndarray, p1: np.ndarray, f1: np.float32, dt: np.float32
) -> None:
    """skimage's 2 inner projection iterations for one flow component (all (M, N) float32), in place.

    Row-pipelined, one pass over memory: the dual of row i needs the flow rows i and i+1 of the
    previous iteration, the primal update of row i the new dual of rows i-1 and i. So the second
    iteration runs one row behind the first (row k of the first, then row k-1 of the second) and
    every value read is the one skimage's whole-array passes would read.
    """
    m = fc.shape[0]
    for k in range(m + 1):
        if k < m:
            _dual_primal_row(fc, ac, p0, p1, f1, dt, k)
        if k > 0:
            _dual_primal_row(fc, ac, p0, p1, f1, dt, k - 1)


def warp_edge_bilinear(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``skimage.transform.warp(image, grid + flow, mode="edge")`` (order 1), compiled.

    Parameters
    ----------
    image : (M, N) float32
    flow : (2, M, N) float32
        Displacement (rows, columns) in pixels.

    Returns
    -------
    (M, N) float32
    """
    image = np.ascontiguousarray(image, np.float32)
    flow = np.ascontiguousarray(flow, np.float32)
    out = np.empty_like(image)
    _warp_into(image, flow[0], flow[1], out)
    return out


def _pyramid(
    image: np.ndarray, downscale: float = 2.0, nlevel: int = 10, min_size: int = 16
) -> list[np.ndarray]:
    """skimage's coarse-to-fine pyramid (finest last), float32."""
    from skimage.transform import pyramid_reduce

    levels = [image]
    size = min(image.shape)
    while len(levels) < nlevel and size > downscale * min_size:
        levels.append(pyramid_reduce(levels[-1], downscale, channel_axis=None))
        size = min(levels[-1].shape)
    return levels[::-1]


def _resize_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Flow of a coarse level on the next level's grid: nearest zoom times the size ratio."""
    from scipy import ndimage as ndi

    scale = [n / o for n, o in zip(shape, flow.shape[1:], strict=True)]
    factor = np.array(scale, dtype=flow.dtype)[:, None, None]
    return factor * ndi.zoom(flow, [1, *scale], order=0, mode="nearest", prefilter=False)


def _tvl1_level(
    ref: np.ndarray,
    moving: np.ndarray,
    flow: np.ndarray,
    attachment: float,
    tightness: float,
    num_warp: int,
    num_iter: int,
    tol: float,
) -> np.ndarray:
    shape = ref.shape
    flow = np.ascontiguousarray(flow, np.float32)
    aux = np.empty_like(flow)
    first = np.empty_like(flow)
    proj = np.zeros((2, 2, *shape), np.float32)
    gy, gx, ni, rho0, warped = (np.empty(shape, np.float32) for _ in range(5))
    dt = 0.5 / 2
    f0 = np.float32(attachment * tightness)
    f1 = np.float32(dt / tightness)
    tol_abs = tol * ref.size
    for _ in range(num_warp):
        _warp_into(moving, flow[0], flow[1], warped)
        _solve_warp(ref, warped, flow, aux, first, proj, gy, gx, ni, rho0, num_iter, f0, f1, np.float32(dt))
        first -= flow  # skimage: flow_previous (the first data step of this warp) - flow_current
        if (first * first).sum() < tol_abs:
            break
    return flow


def optical_flow_tvl1(
    reference_image: np.ndarray,
    moving_image: np.ndarray,
    *,
    attachment: float = 15,
    tightness: float = 0.3,
    num_warp: int = 5,
    num_iter: int = 10,
    tol: float = 1e-4,
) -> np.ndarray:
    """TV-L1 flow from `reference_image` to `moving_image` (skimage's algorithm and defaults).

    Parameters
    ----------
    reference_image, moving_image : (M, N) uint8 or float array
        Converted as skimage does (``img_as_float32``: uint8 / 255).
    attachment, tightness, num_warp, num_iter, tol
        As in ``skimage.registration.optical_flow_tvl1`` (same defaults; ``prefilter=False``).

    Returns
    -------
    (2, M, N) float32
        Flow (v, u): rows then columns, pixels.
    """
    from skimage.util import img_as_float32

    i0 = np.asarray(reference_image)
    i1 = np.asarray(moving_image)
    if i0.shape != i1.shape:
        raise ValueError(f"images differ in shape: {i0.shape} vs {i1.shape}")
    if i0.ndim != 2 or min(i0.shape) < 2:
        raise ValueError(f"2-D images of at least 2x2 px expected, got shape {i0.shape}")
    pyr = list(
        zip(
            _pyramid(np.ascontiguousarray(img_as_float32(i0))),
            _pyramid(np.ascontiguousarray(img_as_float32(i1))),
            strict=True,
        )
    )
    flow = np.zeros((2, *pyr[0][0].shape), np.float32)
    for k, (j0, j1) in enumerate(pyr):
        if k:
            flow = _resize_flow(flow, j0.shape)
        flow = _tvl1_level(
            np.ascontiguousarray(j0), np.ascontiguousarray(j1), flow,
            attachment, tightness, num_warp, num_iter, tol,
        )  # fmt: skip
    return flow
