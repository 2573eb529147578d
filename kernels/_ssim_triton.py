"""Triton bodies of the fused SSIM forward and backward (part 2 of ``srcaco2.kernels.ssim``; see its
docstring).

Plain functions: ``srcaco2.kernels.ssim._jitted`` wraps them with ``triton.jit`` on first use (``tl`` is bound
then), so importing this module never imports Triton.

Layout: one program per (BH × BW) output tile of one (b, c) plane, 1-D grid (tiles fastest along W so
neighbours share their halo in L2). The separable Gaussian runs in registers: the program streams the
BH + w − 1 input rows of its tile + halo; each row is blurred horizontally by w shifted, masked loads
(zero outside the image = zero padding; the shifted re-reads hit L1), then scattered into the
(BH, BW) accumulators with the vertical weights ``G[t − i]`` of that row for every output row i.

The taps loop is unrolled 4× (``UNROLL``), not fully: fully unrolled, ptxas hoisted all 2w shifted
loads of a row and the forward needed 180 registers on sm_90 (2 blocks/SM); 4× keeps 8 loads in
flight at ≈ 93 registers (5 blocks/SM). ``MSE`` (the fused training loss, "same" padding) adds the
tile's Σ (x − y)² in the forward and ``kmse·(x − y)`` to the gradient in the backward.
"""

from __future__ import annotations

from typing import Any

tl: Any = None  # triton.language, bound by srcaco2.kernels._dispatch.jit_kernels


def _kernel_ssim_fwd(
    x_ptr,
    y_ptr,
    g_ptr,
    m_ptr,
    s_ptr,
    d_ptr,
    sum_ptr,
    sse_ptr,
    C,
    H,
    W,
    Ho,
    Wo,
    NTW,
    NTH,
    sxb,
    sxc,
    sxh,
    sxw,
    syb,
    syc,
    syh,
    syw,
    smb,
    smc,
    smh,
    smw,
    c1,
    c2,
    PAD: tl.constexpr,
    WIN: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    STORE_MAP: tl.constexpr,
    NPART: tl.constexpr,
    MSE: tl.constexpr,
    UNROLL: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    tile = pid % (NTW * NTH)
    bc = pid // (NTW * NTH)
    b = (bc // C).to(tl.int64)
    c = (bc % C).to(tl.int64)
    i0 = (tile // NTW) * BH
    j0 = (tile % NTW) * BW
    li = tl.arange(0, BH)
    cols = j0 + tl.arange(0, BW)
    xb = x_ptr + b * sxb + c * sxc
    yb = y_ptr + b * syb + c * syc
    a_x = tl.zeros((BH, BW), dtype=ACC)
    a_y = tl.zeros((BH, BW), dtype=ACC)
    a_xx = tl.zeros((BH, BW), dtype=ACC)
    a_yy = tl.zeros((BH, BW), dtype=ACC)
    a_xy = tl.zeros((BH, BW), dtype=ACC)
    for t in range(0, BH + WIN - 1):
        r = i0 + t - PAD  # input row
        rv = r + 0 * cols  # as a block: the interpreter mis-types scalar & block masks
        row_ok = (rv >= 0) & (rv < H)
        h_x = tl.zeros((BW,), dtype=ACC)
        h_y = tl.zeros((BW,), dtype=ACC)
        h_xx = tl.zeros((BW,), dtype=ACC)
        h_yy = tl.zeros((BW,), dtype=ACC)
        h_xy = tl.zeros((BW,), dtype=ACC)
        xr = xb + r * sxh
        yr = yb + r * syh
        for k in tl.range(0, WIN, loop_unroll_factor=UNROLL):  # partial unroll: see module docstring
            cin = cols + (k - PAD)
            ok = row_ok & (cin >= 0) & (cin < W)
            xv = tl.load(xr + cin * sxw, mask=ok, other=0.0).to(ACC)
            yv = tl.load(yr + cin * syw, mask=ok, other=0.0).to(ACC)
            gk = tl.load(g_ptr + k)
            gx = gk * xv
            gy = gk * yv
            h_x += gx
            h_y += gy
            h_xx += gx * xv
            h_yy += gy * yv
            h_xy += gx * yv
        kv = t - li  # vertical tap of this input row for each output row of the tile
        wv = tl.load(g_ptr + kv, mask=(kv >= 0) & (kv < WIN), other=0.0)[:, None]
        a_x += wv * h_x[None, :]
        a_y += wv * h_y[None, :]
        a_xx += wv * h_xx[None, :]
        a_yy += wv * h_yy[None, :]
        a_xy += wv * h_xy[None, :]
    rows = i0 + li
    ok = (rows < Ho)[:, None] & (cols < Wo)[None, :]
    mux2 = a_x * a_x
    muy2 = a_y * a_y
    muxy = a_x * a_y
    a1 = 2.0 * muxy + c1
    a2 = 2.0 * (a_xy - muxy) + c2
    b1 = mux2 + muy2 + c1
    b2 = (a_xx - mux2) + (a_yy - muy2) + c2
    inv = 1.0 / (b1 * b2)
    s = a1 * a2 * inv
    if HAS_MASK:
        wgt = tl.load(
            m_ptr + b * smb + c * smc + rows[:, None] * smh + cols[None, :] * smw, mask=ok, other=0.0
        ).to(ACC)
    else:
        wgt = tl.where(ok, 1.0, 0.0).to(ACC)
    tl.store(sum_ptr + bc.to(tl.int64) * (NTW * NTH) + tile, tl.sum(tl.sum(s * wgt, axis=1), axis=0))
    if MSE:  # fused loss ("same" padding: the map tile is the image tile); re-read from L1/L2
        xc = tl.load(xb + rows[:, None] * sxh + cols[None, :] * sxw, mask=ok, other=0.0).to(ACC)
        yc = tl.load(yb + rows[:, None] * syh + cols[None, :] * syw, mask=ok, other=0.0).to(ACC)
        dd = xc - yc
        tl.store(sse_ptr + bc.to(tl.int64) * (NTW * NTH) + tile, tl.sum(tl.sum(dd * dd, axis=1), axis=0))
    plane = Ho * Wo
    offs = bc.to(tl.int64) * plane + rows[:, None] * Wo + cols[None, :]
    if STORE_MAP:
        tl.store(s_ptr + offs, s, mask=ok)
    if NPART > 0:
        step = (tl.num_programs(0) // (NTW * NTH)).to(tl.int64) * plane  # B*C planes per partial
        corr = 1.0 / b1 - 1.0 / b2
        tl.store(d_ptr + offs, wgt * (2.0 * a_y * (a2 - a1) * inv - 2.0 * a_x * s * corr), mask=ok)
        tl.store(d_ptr + step + offs, wgt * (-s / b2), mask=ok)
        tl.store(d_ptr + 2 * step + offs, wgt * (2.0 * a1 * inv), mask=ok)
        if NPART > 3:
            tl.store(
                d_ptr + 3 * step + offs, wgt * (2.0 * a_x * (a2 - a1) * inv - 2.0 * a_y * s * corr), mask=ok
            )


def _kernel_ssim_bwd(
    x_ptr,
    y_ptr,
    g_ptr,
    d_ptr,
    w_ptr,
    scale_ptr,
    kmse_ptr,
    gx_ptr,
    gy_ptr,
    C,
    H,
    W,
    Ho,
    Wo,
    NTW,
    NTH,
    sxb,
    sxc,
    sxh,
    sxw,
    syb,
    syc,
    syh,
    syw,
    swb,
    swc,
    swh,
    sww,
    sscale,
    PADT: tl.constexpr,
    WIN: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
    HAS_W: tl.constexpr,
    GRAD_X: tl.constexpr,
    GRAD_Y: tl.constexpr,
    MSE: tl.constexpr,
    UNROLL: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    tile = pid % (NTW * NTH)
    bc = pid // (NTW * NTH)
    b = (bc // C).to(tl.int64)
    c = (bc % C).to(tl.int64)
    i0 = (tile // NTW) * BH
    j0 = (tile % NTW) * BW
    li = tl.arange(0, BH)
    cols = j0 + tl.arange(0, BW)
    plane = Ho * Wo
    step = (tl.num_programs(0) // (NTW * NTH)).to(tl.int64) * plane
    db = d_ptr + bc.to(tl.int64) * plane
    a_mx = tl.zeros((BH, BW), dtype=ACC)  # Gᵀ⋆(g·∂S/∂μx)
    a_e2 = tl.zeros((BH, BW), dtype=ACC)  # Gᵀ⋆(g·∂S/∂E[x²])
    a_xy = tl.zeros((BH, BW), dtype=ACC)  # Gᵀ⋆(g·∂S/∂E[xy])
    a_my = tl.zeros((BH, BW), dtype=ACC)  # Gᵀ⋆(g·∂S/∂μy)
    for t in range(0, BH + WIN - 1):
        p = i0 + t - PADT  # map row
        pv = p + 0 * cols
        row_ok = (pv >= 0) & (pv < Ho)
        h_mx = tl.zeros((BW,), dtype=ACC)
        h_e2 = tl.zeros((BW,), dtype=ACC)
        h_xy = tl.zeros((BW,), dtype=ACC)
        h_my = tl.zeros((BW,), dtype=ACC)
        dr = db + p * Wo
        wr = w_ptr + b * swb + c * swc + p * swh
        for k in tl.range(0, WIN, loop_unroll_factor=UNROLL):
            pc = cols + (k - PADT)
            ok = row_ok & (pc >= 0) & (pc < Wo)
            o = dr + pc
            gk = tl.load(g_ptr + (WIN - 1 - k))  # flipped Gaussian
            if HAS_W:
                gk = gk * tl.load(wr + pc * sww, mask=ok, other=0.0).to(ACC)
            if GRAD_X:
                h_mx += gk * tl.load(o, mask=ok, other=0.0)
            h_e2 += gk * tl.load(o + step, mask=ok, other=0.0)
            h_xy += gk * tl.load(o + 2 * step, mask=ok, other=0.0)
            if GRAD_Y:
                h_my += gk * tl.load(o + 3 * step, mask=ok, other=0.0)
        kv = t - li
        wv = tl.load(g_ptr + (WIN - 1 - kv), mask=(kv >= 0) & (kv < WIN), other=0.0)[:, None]
        if GRAD_X:
            a_mx += wv * h_mx[None, :]
        a_e2 += wv * h_e2[None, :]
        a_xy += wv * h_xy[None, :]
        if GRAD_Y:
            a_my += wv * h_my[None, :]
    rows = i0 + li
    ok = (rows < H)[:, None] & (cols < W)[None, :]
    scale = tl.load(scale_ptr + b * sscale).to(ACC)  # sscale 0: one scalar for the batch (fused loss)
    if MSE:
        kmse = tl.load(kmse_ptr).to(ACC)  # d loss / d Σ(x − y)² · 2
    xv = tl.load(
        x_ptr + b * sxb + c * sxc + rows[:, None] * sxh + cols[None, :] * sxw, mask=ok, other=0.0
    ).to(ACC)
    yv = tl.load(
        y_ptr + b * syb + c * syc + rows[:, None] * syh + cols[None, :] * syw, mask=ok, other=0.0
    ).to(ACC)
    offs = bc.to(tl.int64) * (H * W) + rows[:, None] * W + cols[None, :]
    if GRAD_X:
        gx = scale * (a_mx + 2.0 * xv * a_e2 + yv * a_xy)
        if MSE:
            gx += kmse * (xv - yv)
        tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=ok)
    if GRAD_Y:
        gy = scale * (a_my + 2.0 * yv * a_e2 + xv * a_xy)
        if MSE:
            gy += kmse * (yv - xv)
        tl.store(gy_ptr + offs, gy.to(gy_ptr.dtype.element_ty), mask=ok)
