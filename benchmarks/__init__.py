"""Benchmarks, outside the product package: `python -m benchmarks.bench_generate`,
`benchmarks.bench_dedup`, `benchmarks.bench_infer` (the stages' `--preset`, `--set`, `--build-dir`
options) and `python benchmarks/space_load.py`. They measure; they assert nothing."""
