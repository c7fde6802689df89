"""Prometheus text exposition (format 0.0.4) of an enforcement point, standard library only.

Counters are updated under one lock by the request threads; gauges (view age,
refresh errors) are read from the views when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Admissions by endpoint, verdict and reason; request latency; views' age and refresh errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admissions: Counter[tuple[str, str, str]] = Counter()
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._count = 0
        self._sum = 0.0

    def record(self, endpoint: str, judged: Iterable[tuple[str, str]], seconds: float) -> None:
        """One answered AdmissionReview: its images' (verdict, reason) and the time it took.

        One lock acquisition per request (the request threads contend for it); the histogram keeps
        per-bucket counts and accumulates them when rendered.
        """
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            for verdict, reason in judged:
                self._admissions[(endpoint, verdict, reason)] += 1
            self._count += 1
            self._sum += seconds
            if bucket < len(LATENCY_BUCKETS):
                self._buckets[bucket] += 1

    def render(self, ages: Mapping[str, float | None], refresh_errors: Mapping[str, int]) -> str:
        """The exposition text; ``ages`` in seconds (None: never loaded)."""
        with self._lock:
            admissions = sorted(self._admissions.items())
            buckets, count, total = list(itertools.accumulate(self._buckets)), self._count, self._sum
        lines = [
            "# HELP tufoci_admissions_total Images judged, by endpoint, verdict and reason.",
            "# TYPE tufoci_admissions_total counter",
        ]
        lines += [f'tufoci_admissions_total{{endpoint="{_label(e)}",verdict="{_label(v)}",reason="{_label(r)}"}} {n}'
                  for (e, v, r), n in admissions]
        lines += ["# HELP tufoci_admission_duration_seconds Time to answer one AdmissionReview.",
                  "# TYPE tufoci_admission_duration_seconds histogram"]
        lines += [f'tufoci_admission_duration_seconds_bucket{{le="{bound}"}} {n}'
                  for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True)]
        lines += [f'tufoci_admission_duration_seconds_bucket{{le="+Inf"}} {count}',
                  f"tufoci_admission_duration_seconds_sum {total:.6f}",
                  f"tufoci_admission_duration_seconds_count {count}",
                  *view_lines(ages, refresh_errors)]
        return "\n".join(lines) + "\n"


def view_lines(ages: Mapping[str, float | None], refresh_errors: Mapping[str, int]) -> list[str]:
    """The views' gauges, shared by every enforcement point: each scope's age (-1: never) and refresh errors."""
    lines = ["# HELP tufoci_view_age_seconds Seconds since each scope's trust data was last verified (-1: never).",
             "# TYPE tufoci_view_age_seconds gauge"]
    lines += [f'tufoci_view_age_seconds{{scope="{_label(s)}"}} {-1 if a is None else round(a, 3)}'
              for s, a in sorted(ages.items())]
    lines += ["# HELP tufoci_refresh_errors_total Failed refreshes of each scope's trust data.",
              "# TYPE tufoci_refresh_errors_total counter"]
    lines += [f'tufoci_refresh_errors_total{{scope="{_label(s)}"}} {n}' for s, n in sorted(refresh_errors.items())]
    return lines
