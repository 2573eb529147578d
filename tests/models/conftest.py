"""Shared helpers of the model tests, as fixtures (the suite runs with ``--import-mode=importlib``).

- `one_thread`: module-scoped single-threaded torch (tiny convs run faster on a shared CPU); a test
  module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
- `check_reference_layout`: THE layout check of a network against its reference JSON.
- `check_tiny_forward_backward`, `check_round_trip`, `check_meta_assign_round_trip`: the shared
  train-step and state_dict round-trip checks of the per-network test modules.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from srcaco2.trainers.models import build_model, reference_layout


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run the module's tests with ``torch.set_num_threads(1)``, restoring the count after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_reference_layout(name: str, scale: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build `name` at `scale` on the meta device and compare it with ``reference/<name>_x<scale>.json``.

    Checks, in order: state_dict keys (missing / unexpected named first), then every row
    ``[key, shape, dtype, "param" | "buffer"]`` in state_dict order, the entry and element counts,
    the parameter count, the frozen parameters, and the non-persistent buffers (name, shape, dtype).

    Returns
    -------
    (model, ref)
        The meta-device model and the reference record, for network-specific checks.
    """
    ref = reference_layout(name, scale)
    assert ref is not None, f"no reference/{name}_x{scale}.json"
    with torch.device("meta"):
        model = build_model(name, scale)
    state = model.state_dict()
    buffers = {k for k, _ in model.named_buffers()}
    got = [[k, list(v.shape), _dtype(v), "buffer" if k in buffers else "param"] for k, v in state.items()]
    expected = ref["state_dict"]
    missing = [r[0] for r in expected if r[0] not in state]
    extra = [k for k in state if k not in {r[0] for r in expected}]
    assert not missing and not extra, f"{name} x{scale}: missing {missing[:5]}, unexpected {extra[:5]}"
    assert got == expected  # shapes, dtypes, parameter/buffer and order
    assert len(state) == ref["state_dict_entries"]
    assert sum(v.numel() for v in state.values()) == ref["state_dict_tensor_elements"]
    assert sum(p.numel() for p in model.parameters()) == ref["param_count"]
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == sorted(ref["params_requires_grad_false"])
    non_persistent = [[n, list(b.shape), _dtype(b)] for n, b in model.named_buffers() if n not in state]
    assert non_persistent == ref["non_persistent_buffers"]
    return model, ref


@pytest.fixture(scope="session")
def check_reference_layout() -> Callable[[str, int], tuple[torch.nn.Module, dict[str, Any]]]:
    """``check(name, scale) -> (meta model, reference record)``; see `_check_reference_layout`."""
    return _check_reference_layout


def _tiny_forward_backward(
    name: str,
    scale: int,
    overrides: dict[str, Any],
    shape: tuple[int, int, int, int],
    *,
    unused: frozenset[str] | set[str] = frozenset(),
    setup: Callable[[torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """Seed 0, build in train mode, forward ``torch.rand(shape)`` and backward ``mean(y**2)``.

    Asserts a float32 tensor output of shape ``(B, C, s*h, s*w)``, a finite gradient on every
    trainable parameter except those named in `unused` (whose gradient must be None), a finite
    input gradient, and no gradient on any buffer. `setup(model)` runs before the forward (e.g. to
    pin NLSN's LSH generator). Returns the model.
    """
    torch.manual_seed(0)
    model = build_model(name, scale, **overrides).train()
    if setup is not None:
        setup(model)
    b, c, h, w = shape
    x = torch.rand(shape, requires_grad=True)
    y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (b, c, h * scale, w * scale)
    assert y.dtype == torch.float32
    y.square().mean().backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if pname in unused:
            assert p.grad is None, pname
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(buf.grad is None for buf in model.buffers())
    return model


def _round_trip(
    name: str,
    scale: int,
    x: torch.Tensor,
    overrides: dict[str, Any] | None = None,
    *,
    setup: Callable[[torch.nn.Module], None] | None = None,
    repeat: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """Build `name` with seed 0 and seed 1, strict-load the first's state_dict (through
    ``torch.save``/``torch.load(weights_only=True)``) into the second, and assert identical
    eval outputs on `x` (`setup(model)` runs on each before its forward); with `repeat`, a second
    forward of the loaded model must give the same output again (deterministic eval). Returns
    ``(y_first, y_second, second model)``."""
    overrides = overrides or {}
    torch.manual_seed(0)
    a = build_model(name, scale, **overrides).eval()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)  # different weights (and random buffers) before loading
    b = build_model(name, scale, **overrides).eval()
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    for m in (a, b):
        if setup is not None:
            setup(m)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
    if repeat:
        with torch.no_grad():
            assert torch.equal(yb, b(x))
    return ya, yb, b


def _meta_assign_round_trip(name: str, scale: int) -> None:
    """Full size: save a seeded model's state_dict, strict-load it with ``assign=True`` into a
    meta-device instance, and assert the same keys in the same order and identical tensors."""
    torch.manual_seed(0)
    a = build_model(name, scale)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    with torch.device("meta"):
        b = build_model(name, scale)
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True, assign=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="session")
def check_tiny_forward_backward() -> Callable[..., torch.nn.Module]:
    """See `_tiny_forward_backward`."""
    return _tiny_forward_backward


@pytest.fixture(scope="session")
def check_round_trip() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.nn.Module]]:
    """See `_round_trip`."""
    return _round_trip


@pytest.fixture(scope="session")
def check_meta_assign_round_trip() -> Callable[[str, int], None]:
    """See `_meta_assign_round_trip`."""
    return _meta_assign_round_trip
