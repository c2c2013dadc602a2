"""Per-client limits of the data API: a token bucket of requests and a cap on requests in progress.

One misbehaving HIS job (a loop without pause, a retry storm) must not starve the other clients or
the replication stream of the shared database connections. Each API key gets ``rate`` requests per
second with bursts up to ``burst``, and at most ``max_concurrent`` requests at once; beyond that the
answer is ``429 RATE_LIMITED`` with ``Retry-After`` (whole seconds) and nothing is read or written.
In memory, per process: the limits protect this front end, not a cluster.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cdcsync.api.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    at: float
    in_flight: int = 0


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_concurrent: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def _take(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            b = self._buckets.setdefault(client, _Bucket(float(self.burst), now))
            b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.in_flight >= self.max_concurrent:
                raise _limited(f"同一 API 密钥同时进行的请求过多（上限 {self.max_concurrent} 个），"
                               "请等待前面的请求完成后再发送", 1, "concurrency")
            if b.tokens < 1.0:
                wait = max(1, math.ceil((1.0 - b.tokens) / self.rate))
                raise _limited(f"请求过于频繁：每个 API 密钥每秒最多 {self.rate:g} 个请求"
                               f"（可短时突发 {self.burst} 个），请 {wait} 秒后重试", wait, "rate")
            b.tokens -= 1.0
            b.in_flight += 1

    def _release(self, client: str) -> None:
        with self._lock:
            self._buckets[client].in_flight -= 1

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one request slot of ``client`` for the duration; 429 ApiError when none is free."""
        self._take(client)
        try:
            yield
        finally:
            self._release(client)


def _limited(message: str, retry_after: int, limit: str) -> ApiError:
    return ApiError(429, "RATE_LIMITED", message, {"limit": limit, "retry_after_seconds": retry_after},
                    headers={"Retry-After": str(retry_after)})
