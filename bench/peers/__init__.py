"""Peers that tufoci is benchmarked against (see bench/compare.py)."""
