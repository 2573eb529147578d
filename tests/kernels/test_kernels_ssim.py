"""srcaco2.kernels.ssim: the torch reference against skimage and the 5-conv formulation; the Triton kernel
(under TRITON_INTERPRET=1 on CPU) against the float64 reference, values and gradients; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srcaco2.kernels import ssim as ssim_mod
from srcaco2.kernels._dispatch import interpreter_enabled
from srcaco2.kernels.ssim import _reference, ssim, ssim_5conv, ssim_loss

needs_interp = pytest.mark.skipif(
    not (interpreter_enabled() or torch.cuda.is_available()),
    reason="the Triton path needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU machines)",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
# Tolerances of the kernel against the float64 reference evaluated on the same (rounded) inputs:
# values absolute; gradients relative to the largest reference gradient (they are stored in the input dtype).
TOL = {
    torch.float64: {"val": 1e-10, "grad": 1e-9},
    torch.float32: {"val": 2e-5, "grad": 2e-4},
    torch.float16: {"val": 2e-5, "grad": 4e-3},
    torch.bfloat16: {"val": 2e-5, "grad": 3e-2},
}


# ----------------------------------------------------------------------------------- the reference (torch)
@pytest.mark.parametrize("shape", [(2, 1, 37, 45), (1, 2, 29, 33)])
@pytest.mark.parametrize("window", [3, 11, 19])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_reference_equals_5conv(pair, shape, window, padding):
    x, y = pair(shape, seed=window)
    sep = ssim(x, y, window=window, padding=padding, reduction="none", backend="torch")
    dense = ssim_5conv(x, y, window=window, padding=padding, reduction="none")
    h, w = shape[-2:]
    hw = (h, w) if padding == "same" else (h - window + 1, w - window + 1)
    assert sep.shape == (*shape[:2], *hw)
    torch.testing.assert_close(sep, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["random", "microscopy"])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_reference_matches_skimage_valid_11(pair, kind, data_range):
    from skimage.metrics import structural_similarity

    x, y = pair((3, 1, 40, 36), seed=7, kind=kind)
    x, y = x * data_range, y * data_range
    ours = ssim(
        x,
        y,
        window=11,
        sigma=1.5,
        padding="valid",
        data_range=data_range,
        reduction="per_image",
        backend="torch",
    )
    # skimage filters the whole image (reflect padding) then drops (win - 1) / 2 = 5 px per side and
    # averages: that is exactly the mean of the valid map.
    ref = [
        structural_similarity(
            x[i, 0].numpy(),
            y[i, 0].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(ours.numpy(), np.array(ref), rtol=0, atol=1e-10)
    assert len({round(v, 6) for v in ref}) == 3  # three different images, not a constant


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_reference_gradcheck(pair, padding):
    x, y = pair((1, 2, 7, 8), seed=3)
    mask = (
        torch.rand(
            (1, 1, 7, 8) if padding == "same" else (1, 1, 3, 4),
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(1),
        )
        > 0.3
    )
    x.requires_grad_(True)
    y.requires_grad_(True)

    def f(a, b):
        return ssim(a, b, window=5, padding=padding, reduction="per_image", mask=mask, backend="torch")

    assert torch.autograd.gradcheck(f, (x, y))


def test_identical_images_give_one_and_loss_zero(pair):
    x, _ = pair((2, 1, 23, 21))
    assert float(ssim(x, x, window=19, backend="torch")) == pytest.approx(1.0, abs=1e-12)
    loss = ssim_loss(x, x, window=11, padding="valid", backend="torch")
    assert float(loss) == pytest.approx(0.0, abs=1e-12)
    x2, y2 = pair((2, 1, 23, 21), seed=5)
    s = ssim(x2, y2, window=11, backend="torch")
    assert float(ssim_loss(x2, y2, window=11, backend="torch")) == pytest.approx(1.0 - float(s), abs=1e-12)
    assert 0.0 < float(s) < 1.0


def test_mask_reduction_reference(pair):
    x, y = pair((2, 2, 15, 17), seed=4)
    smap = ssim(x, y, window=5, reduction="none", backend="torch")
    mask = torch.zeros(2, 1, 15, 17, dtype=torch.bool)
    mask[0, :, 3:9, 2:11] = True  # image 1 has an empty mask -> 0
    got = ssim(x, y, window=5, mask=mask, reduction="per_image", backend="torch")
    want0 = smap[0][mask[0].expand(2, 15, 17)].mean()
    torch.testing.assert_close(got, torch.stack([want0, torch.zeros((), dtype=torch.float64)]))
    assert torch.equal(ssim(x, y, window=5, mask=mask, backend="torch"), got.mean())


def test_auto_backend_on_cpu_uses_the_reference(pair, monkeypatch):
    x, y = pair((1, 1, 12, 13))

    def boom(*a, **k):
        raise AssertionError("the Triton path must not run on CPU with backend='auto'")

    monkeypatch.setattr(ssim_mod._ssim_ops, "ssim_op", boom)
    torch.testing.assert_close(ssim(x, y), ssim(x, y, backend="torch"))


# ------------------------------------------------------------------------------------- the Triton kernel
CASES = [  # (dtype, window, padding, shape): kept tiny, the interpreter runs every op in Python
    (torch.float64, 3, "valid", (2, 1, 37, 45)),
    (torch.float32, 5, "same", (2, 1, 37, 45)),
    (torch.float32, 11, "valid", (2, 1, 37, 45)),
    (torch.float32, 19, "same", (1, 2, 29, 33)),
    (torch.float16, 7, "same", (1, 2, 29, 33)),
    (torch.bfloat16, 7, "valid", (1, 2, 29, 33)),
]


@needs_interp
@pytest.mark.parametrize(("dtype", "window", "padding", "shape"), CASES)
def test_kernel_matches_reference(pair, dtype, window, padding, shape):
    x64, y64 = pair(shape, seed=window)
    x = x64.to(dtype).to(DEV).requires_grad_(True)
    y = y64.to(dtype).to(DEV).requires_grad_(True)
    got = ssim(x, y, window=window, padding=padding, reduction="per_image", backend="triton")
    wts = torch.tensor([0.7, -1.3][: shape[0]], dtype=got.dtype, device=DEV)
    gx, gy = torch.autograd.grad((got * wts).sum(), (x, y))

    xr = x.detach().double().cpu().requires_grad_(True)  # reference on the same rounded inputs
    yr = y.detach().double().cpu().requires_grad_(True)
    want = _reference(xr, yr, window, 1.5, padding, 1.0).mean(dim=(1, 2, 3))
    rx, ry = torch.autograd.grad((want * wts.double().cpu()).sum(), (xr, yr))

    tol = TOL[dtype]
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert gx.dtype == dtype and gx.shape == x.shape
    torch.testing.assert_close(got.double().cpu(), want.detach(), rtol=0, atol=tol["val"])
    for g, r in ((gx, rx), (gy, ry)):
        torch.testing.assert_close(g.double().cpu(), r, rtol=0, atol=tol["grad"] * r.abs().max().item())


@needs_interp
def test_kernel_map_and_mask(pair):
    x64, y64 = pair((2, 2, 13, 15), seed=11)
    x, y = x64.float().to(DEV).requires_grad_(True), y64.float().to(DEV).requires_grad_(True)
    up = torch.randn(2, 2, 13, 15, generator=torch.Generator().manual_seed(2)).to(DEV)
    smap = ssim(x, y, window=5, reduction="none", backend="triton")
    gx, gy = torch.autograd.grad((smap * up).sum(), (x, y))
    xr, yr = x64.clone().requires_grad_(True), y64.clone().requires_grad_(True)
    ref = _reference(xr, yr, 5, 1.5, "same", 1.0)
    rx, ry = torch.autograd.grad((ref * up.double().cpu()).sum(), (xr, yr))
    torch.testing.assert_close(smap.double().cpu(), ref.detach(), rtol=0, atol=2e-5)
    torch.testing.assert_close(gx.double().cpu(), rx, rtol=0, atol=2e-4 * rx.abs().max().item())
    torch.testing.assert_close(gy.double().cpu(), ry, rtol=0, atol=2e-4 * ry.abs().max().item())

    mask = torch.rand(1, 2, 13, 15, generator=torch.Generator().manual_seed(3)) > 0.5  # broadcast over B
    got = ssim(x, y, window=5, mask=mask.to(DEV), reduction="per_image", backend="triton")
    gx = torch.autograd.grad(got.sum(), x)[0]
    want = ssim(xr, yr, window=5, mask=mask, reduction="per_image", backend="torch")
    rx = torch.autograd.grad(want.sum(), xr)[0]
    torch.testing.assert_close(got.double().cpu(), want.detach(), rtol=0, atol=2e-5)
    torch.testing.assert_close(gx.double().cpu(), rx, rtol=0, atol=2e-4 * rx.abs().max().item())


@needs_interp
def test_kernel_gradcheck_fp64(pair):
    x, y = pair((1, 1, 7, 8), seed=9)
    x.requires_grad_(True)
    y.requires_grad_(True)
    for padding in ("same", "valid"):
        assert torch.autograd.gradcheck(
            lambda a, b, p=padding: ssim(a.to(DEV), b.to(DEV), window=3, padding=p, backend="triton"),
            (x, y),
            fast_mode=True,
        )


@needs_interp
def test_kernel_non_contiguous_inputs_and_single_grad(pair):
    x64, y64 = pair((1, 2, 17, 30), seed=12)
    xt = x64.float().to(DEV)[..., ::2]  # stride 2 along W
    yt = y64.float().to(DEV).transpose(2, 3).contiguous().transpose(2, 3)[..., 1::2]  # column-major planes
    assert not xt.is_contiguous() and not yt.is_contiguous()
    yt.requires_grad_(True)  # only y needs a gradient
    got = ssim(xt, yt, window=5, padding="valid", backend="triton")
    gy = torch.autograd.grad(got, yt)[0]
    yc = yt.detach().contiguous().requires_grad_(True)
    want = ssim(xt.contiguous(), yc, window=5, padding="valid", backend="torch")
    ry = torch.autograd.grad(want, yc)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    torch.testing.assert_close(gy, ry, rtol=0, atol=2e-4 * ry.abs().max().item())
    with torch.no_grad():  # no partials saved, same value
        torch.testing.assert_close(ssim(xt, yt, window=5, padding="valid", backend="triton"), got)


# --------------------------------------------------------------------------------------------- bad input
def _xy(shape=(1, 1, 16, 16), dtype=torch.float32):
    return torch.rand(shape, dtype=dtype), torch.rand(shape, dtype=dtype)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"window": 12}, ValueError, r"odd int in 3\.\.31"),
        ({"window": 33}, ValueError, r"odd int in 3\.\.31"),
        ({"window": 1}, ValueError, r"odd int in 3\.\.31"),
        ({"window": 11.0}, ValueError, r"odd int in 3\.\.31"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"padding": "reflect"}, ValueError, r"\('same', 'valid'\)"),
        ({"reduction": "sum"}, ValueError, r"\('mean', 'none', 'per_image'\)"),
        ({"data_range": -1.0}, ValueError, "data_range"),
        ({"window": 19, "padding": "valid"}, ValueError, "H, W >= window=19"),
        ({"backend": "cuda"}, ValueError, r"\('auto', 'triton', 'torch'\)"),
        ({"mask": torch.ones(1, 1, 15, 16)}, ValueError, r"mask must have shape \(1 or 1, 1 or 1, 16, 16\)"),
        ({"mask": torch.ones(1, 1, 16, 16), "reduction": "none"}, ValueError, "reduction 'mean' or"),
        ({"mask": torch.ones(1, 1, 16, 16, dtype=torch.int32)}, TypeError, "bool or floating"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    x, y = _xy()
    with pytest.raises(exc, match=match):
        ssim(x, y, **kwargs)


def test_bad_tensors():
    x, y = _xy()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(x[0], y[0])
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(x, y[..., :15])
    with pytest.raises(TypeError, match="dtypes differ"):
        ssim(x, y.double())
    with pytest.raises(TypeError, match="dtype must be one of"):
        ssim(x.to(torch.uint8), y.to(torch.uint8))
    with pytest.raises(ValueError, match="devices differ"):
        ssim(x, y.to("meta"))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ssim(x.numpy(), y)
    with pytest.raises(ValueError, match="empty"):
        ssim(x[:0], y[:0])
    with pytest.raises(ValueError, match="odd int"):
        ssim_5conv(x, y, window=4)


@needs_interp
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_kernel_spans_several_tiles_in_both_directions(pair, padding):
    # 36 × 150 with window 3: 3 tiles of 16 rows × 3 tiles of 64 columns (2 for valid: 148 columns)
    x64, y64 = pair((2, 1, 36, 150), seed=13)
    x, y = x64.float().to(DEV).requires_grad_(True), y64.float().to(DEV).requires_grad_(True)
    got = ssim(x, y, window=3, padding=padding, reduction="per_image", backend="triton")
    gx, gy = torch.autograd.grad(got.sum(), (x, y))
    xr, yr = x64.float().double().requires_grad_(True), y64.float().double().requires_grad_(True)
    want = ssim_5conv(xr, yr, window=3, padding=padding, reduction="per_image")
    rx, ry = torch.autograd.grad(want.sum(), (xr, yr))
    torch.testing.assert_close(got.double().cpu(), want.detach(), rtol=0, atol=2e-5)
    for g, r in ((gx, rx), (gy, ry)):
        torch.testing.assert_close(g.double().cpu(), r, rtol=0, atol=2e-4 * r.abs().max().item())


def test_taps_are_cached_per_device_and_dtype():
    from srcaco2.kernels import _ssim_ops

    a = _ssim_ops.taps(19, 1.5, torch.float32, torch.device("cpu"))
    assert a is _ssim_ops.taps(19, 1.5, torch.float32, torch.device("cpu"))  # no new copy per call
    assert a is not _ssim_ops.taps(19, 1.5, torch.float64, torch.device("cpu"))
    assert a is not _ssim_ops.taps(11, 1.5, torch.float32, torch.device("cpu"))
    torch.testing.assert_close(a.sum(), torch.tensor(1.0))
