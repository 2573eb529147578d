"""Triton kernels (fused SSIM loss, pixel shuffle with fused epilogue), each beside a torch reference."""
