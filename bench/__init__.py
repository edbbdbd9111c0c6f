"""Benchmarks (not tests): the alert storm, its per-user-script baseline and lower bound, and
the cold start of `function_app`. Run `python -m bench.storm` (or `make bench`); results are
written to bench/out/ (git-ignored) and summarised in bench/RESULTS.md."""
