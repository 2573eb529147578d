"""Suite-wide settings: Triton kernels run under the interpreter on CPU-only machines."""

import os

# Must be set before any module decorates a Triton kernel (kernels are imported lazily by tests).
if os.environ.get("SRCACO2_NO_TRITON_INTERPRET") != "1":
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except ImportError:  # pragma: no cover
        pass
