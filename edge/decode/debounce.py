"""The same code in consecutive frames is one scan."""
from __future__ import annotations


class Debouncer:
    """A code counts again only after it has been out of sight for `window_ns`.

    The window slides with every sighting, so a pass held in front of the camera for a minute is still
    one scan, while the same code shown again after a pause is a new one.
    """

    def __init__(self, window_ns: int, max_codes: int = 4096):
        self.window_ns = window_ns
        self.max_codes = max_codes
        self._seen: dict[bytes, int] = {}

    def fresh(self, key: bytes, now_ns: int) -> bool:
        last = self._seen.pop(key, None)
        self._seen[key] = now_ns  # re-inserted last: the dict stays ordered oldest sighting first
        if len(self._seen) > self.max_codes:
            self._expire(now_ns)
        return last is None or now_ns - last >= self.window_ns

    def _expire(self, now_ns: int) -> None:
        for key, seen in list(self._seen.items()):
            if now_ns - seen < self.window_ns and len(self._seen) <= self.max_codes:
                break
            del self._seen[key]
