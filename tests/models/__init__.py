"""Tiny models built at test time from code: random weights, real architectures, no downloads."""
