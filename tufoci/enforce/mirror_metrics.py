"""Prometheus text exposition of the verifying mirror, standard library only.

Requests by kind (manifest, blob), verdict and reason; bytes streamed to
clients; upstream latency; blobs cut off for a digest mismatch; upstream tags
seen moved away from their signed digest; each scope's view age and refresh
errors (read from the views when ``/metrics`` is scraped).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from tufoci.enforce.metrics import LATENCY_BUCKETS, _label, view_lines


class MirrorMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pulls: Counter[tuple[str, str, str]] = Counter()
        self._counters: Counter[str] = Counter()
        self._moved: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = {}  # upstream -> bucket counts, then count and sum

    def pull(self, kind: str, verdict: str, reason: str) -> None:
        with self._lock:
            self._pulls[(kind, verdict, reason)] += 1

    def add(self, counter: str, amount: int = 1) -> None:
        """``bytes_streamed`` or ``blob_mismatches``."""
        with self._lock:
            self._counters[counter] += amount

    def moved_tag(self, upstream: str) -> None:
        with self._lock:
            self._moved[upstream] += 1

    def upstream_latency(self, upstream: str, seconds: float) -> None:
        with self._lock:
            row = self._latency.setdefault(upstream, [0.0] * (len(LATENCY_BUCKETS) + 2))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += 1
            row[-1] += seconds

    def render(self, ages: Mapping[str, float | None], refresh_errors: Mapping[str, int]) -> str:
        with self._lock:
            pulls, counters, moved = sorted(self._pulls.items()), dict(self._counters), sorted(self._moved.items())
            latency = {u: list(row) for u, row in sorted(self._latency.items())}
        lines = ["# HELP tufoci_mirror_requests_total Manifest and blob requests, by kind, verdict and reason.",
                 "# TYPE tufoci_mirror_requests_total counter"]
        lines += [f'tufoci_mirror_requests_total{{kind="{_label(k)}",verdict="{_label(v)}",reason="{_label(r)}"}} {n}'
                  for (k, v, r), n in pulls]
        lines += ["# HELP tufoci_mirror_bytes_streamed_total Blob bytes sent to clients.",
                  "# TYPE tufoci_mirror_bytes_streamed_total counter",
                  f"tufoci_mirror_bytes_streamed_total {counters.get('bytes_streamed', 0)}",
                  "# HELP tufoci_mirror_blob_mismatches_total Blob transfers cut off: upstream bytes did not match.",
                  "# TYPE tufoci_mirror_blob_mismatches_total counter",
                  f"tufoci_mirror_blob_mismatches_total {counters.get('blob_mismatches', 0)}",
                  "# HELP tufoci_mirror_moved_tags_total Upstream tags seen pointing away from their signed digest.",
                  "# TYPE tufoci_mirror_moved_tags_total counter"]
        lines += [f'tufoci_mirror_moved_tags_total{{upstream="{_label(u)}"}} {n}' for u, n in moved]
        lines += ["# HELP tufoci_mirror_upstream_seconds Time to a manifest or a blob's first bytes from upstream.",
                  "# TYPE tufoci_mirror_upstream_seconds histogram"]
        for upstream, row in latency.items():
            u = _label(upstream)
            lines += [f'tufoci_mirror_upstream_seconds_bucket{{upstream="{u}",le="{b}"}} {int(n)}'
                      for b, n in zip(LATENCY_BUCKETS, row, strict=False)]
            lines += [f'tufoci_mirror_upstream_seconds_bucket{{upstream="{u}",le="+Inf"}} {int(row[-2])}',
                      f'tufoci_mirror_upstream_seconds_sum{{upstream="{u}"}} {row[-1]:.6f}',
                      f'tufoci_mirror_upstream_seconds_count{{upstream="{u}"}} {int(row[-2])}']
        lines += view_lines(ages, refresh_errors)
        return "\n".join(lines) + "\n"
