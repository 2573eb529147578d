"""Backend choice (Triton or plain torch) and lazy ``@triton.jit`` decoration for the kernel modules.

Rules
-----
- ``backend="auto"``: Triton when every tensor is on a CUDA device and Triton imports; plain torch
  otherwise (CPU, MPS, or no Triton).
- ``backend="triton"``: always the Triton kernel. On CPU tensors this needs the Triton interpreter
  (environment ``TRITON_INTERPRET=1`` set before the first kernel is built: ``tests/conftest.py`` does
  it on CPU-only machines); without it a ``RuntimeError`` says how to enable it.
- ``backend="torch"``: always the plain-torch reference.

Kernels are plain functions in their module that reference the module global ``tl``; they are wrapped
by ``triton.jit`` on first use (:func:`jit_kernels`), so importing a kernel module never imports
Triton, and ``TRITON_INTERPRET`` is read when the kernel is built, not when the module is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any, Literal

import torch

__all__ = [
    "BACKENDS",
    "device_guard",
    "interpreter_enabled",
    "jit_kernels",
    "resolve_backend",
    "triton_available",
]

BACKENDS = ("auto", "triton", "torch")


def triton_available() -> bool:
    """True when the ``triton`` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run in Python on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, *tensors: torch.Tensor, op: str) -> Literal["triton", "torch"]:
    """Choose the implementation of ``op`` for ``tensors`` (see the module docstring).

    Raises
    ------
    ValueError
        ``backend`` is not one of ``BACKENDS``.
    RuntimeError
        ``backend="triton"`` but Triton is missing, or the tensors are on CPU without the interpreter.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if not triton_available():
        raise RuntimeError(f"{op}: backend='triton' but the triton package is not installed; use 'auto'")
    if not on_cuda:
        if any(t.device.type != "cpu" for t in tensors):
            raise RuntimeError(f"{op}: backend='triton' needs CUDA tensors (or CPU under the interpreter)")
        if not interpreter_enabled():
            raise RuntimeError(
                f"{op}: backend='triton' on CPU tensors needs the Triton interpreter; set the environment "
                "variable TRITON_INTERPRET=1 before the first kernel call, or use backend='auto'"
            )
    return "triton"


def jit_kernels(module_globals: dict[str, Any], *names: str) -> tuple[Callable[..., Any], ...]:
    """Bind ``tl``/``triton`` in ``module_globals`` and return ``triton.jit`` of each named function.

    Call it from a ``functools.cache``-d getter in the kernel module so it runs once per process.
    """
    import triton
    import triton.language as tl

    module_globals["tl"] = tl
    module_globals["triton"] = triton
    return tuple(triton.jit(module_globals[name]) for name in names)


def device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make ``t``'s CUDA device current for a launch (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
