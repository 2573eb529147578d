"""srcaco2.benchmarks.gpu_check without a GPU: it stops at once with a message that says what is missing."""

from __future__ import annotations

import pytest
import torch

from srcaco2.benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_fails_fast_without_cuda(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--compile-only" in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written
