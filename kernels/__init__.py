"""Triton kernels (SSIM, the fused MSE − SSIM training loss, pixel shuffle with fused epilogue), each beside
a torch reference and registered as torch custom ops (``srcaco2::*``)."""
