"""Jittered exponential backoff, shared by read retries and the view's reconnects.

"Full jitter" (a uniform draw between 0 and the capped exponential): many clients that
lost one server at once do not come back in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays of ``uniform(0, min(cap, base * 2**attempt))``; ``reset`` after a success."""

    base_seconds: float = 0.1
    cap_seconds: float = 5.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not security)

    def reset(self) -> None:
        self.attempt = 0
