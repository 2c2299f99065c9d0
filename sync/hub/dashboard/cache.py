"""A short-lived cache of what every administrator sees alike (the fleet table): each browser redraws it every
2 seconds, and with a thousand devices building it costs more than sending it.

Fresh for `fresh_s`; then, up to `stale_s`, the old value is served while one background thread builds the
next, so no request waits for a rebuild; older than that (nobody looked for a while), it is built inline."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("checkpoint.hub.dashboard")


class Fresh:
    def __init__(self, fresh_s: float = 1.0, stale_s: float = 10.0, keys: int = 64, clock=time.monotonic):
        self.fresh_s, self.stale_s, self.keys, self.clock = fresh_s, stale_s, keys, clock
        self._values: dict = {}
        self._building: set = set()
        self._lock = threading.Lock()

    def get(self, key, make):
        now = self.clock()
        with self._lock:
            held = self._values.get(key)
            if held and now - held[0] < self.fresh_s:
                return held[1]
            if held and now - held[0] < self.stale_s:
                if key not in self._building:
                    self._building.add(key)
                    threading.Thread(target=self._rebuild, args=(key, make), daemon=True).start()
                return held[1]
        return self._put(key, make())

    def _put(self, key, value):
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = (self.clock(), value)
            while len(self._values) > self.keys:
                self._values.pop(next(iter(self._values)))
        return value

    def _rebuild(self, key, make) -> None:
        try:
            self._put(key, make())
        except Exception as exc:  # the next request builds it inline and shows the failure
            log.warning("dashboard: rebuilding the fleet view failed: %r", exc)
        finally:
            with self._lock:
                self._building.discard(key)
