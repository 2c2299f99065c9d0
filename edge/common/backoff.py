"""Waits that grow after each failure, up to a ceiling, for anything that retries (a camera, a scanner, the
sync agent). One piece so every retry loop in the appliance behaves, logs and is tested the same way."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

# Past this many doublings the step is at any sane maximum already; capping the exponent keeps the float
# arithmetic finite however long a device stays away.
_MAX_EXPONENT = 32


class Backoff:
    """Waits of initial * factor**n, capped at maximum.

    Without rng each wait is the whole step (0.5, 1, 2, ... maximum). With rng (a function giving a float
    in [0, 1), e.g. random.random) each wait is drawn from the upper half of its step ("equal jitter"):
    a fleet that lost its collector at the same moment does not come back in step, and no wait is shorter
    than half the step. Not thread-safe: one loop owns one Backoff.
    """

    def __init__(self, *, initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0,
                 rng: Callable[[], float] | None = None):
        if initial <= 0 or factor < 1 or maximum <= 0:
            raise ValueError(f"Backoff needs initial > 0, factor >= 1, maximum > 0 "
                             f"(got {initial}, {factor}, {maximum})")
        self.initial, self.factor, self.maximum, self.rng = initial, factor, maximum, rng
        self.attempts = 0  # waits handed out since the last reset
        self.delays: deque[float] = deque(maxlen=32)  # the last waits chosen: what a test or a debugger looks at

    def step(self) -> float:
        """The step the next wait is drawn from (the wait itself when there is no jitter)."""
        return min(self.maximum, self.initial * self.factor ** min(self.attempts, _MAX_EXPONENT))

    def next(self) -> float:
        """The next wait in seconds; the one after it grows."""
        step = self.step()
        self.attempts += 1
        delay = step if self.rng is None else step / 2 + self.rng() * step / 2
        self.delays.append(delay)
        return delay

    def reset(self) -> None:
        """After a success: the next wait is the first again."""
        self.attempts = 0
        self.delays.clear()
