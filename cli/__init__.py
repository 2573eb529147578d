"""Thin click front ends: `srdata` and `srtrain`."""
