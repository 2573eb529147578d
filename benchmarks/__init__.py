"""Microbenchmarks: `python -m benchmarks.{build,loader,kernels,train_step}` print a table, write JSON."""
