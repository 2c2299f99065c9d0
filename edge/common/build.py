"""When this software was made, as far as the installed files can tell: the clock judge's floor (a wall
clock earlier than the software it runs cannot be right).

Derived, not kept by hand: the newest modification time of the package's own Python files. A wheel,
a Debian package (dpkg keeps the build's times) or a git checkout all leave files no older than the
software they hold, so the floor only ever errs low; a floor too low is merely weaker, one too high
would distrust a true clock. FLOOR_DATE stays as the least it can be (files whose times were lost, e.g.
copied with a clock at 1970)."""
from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

FLOOR_DATE = "2026-11-25"  # the release this derivation came with: no build of it is older
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # edge/


def newest_file_date(root: Path, pattern: str = "*.py") -> str | None:
    """The UTC date (YYYY-MM-DD) of the newest file matching pattern under root; None when there is none."""
    newest = 0.0
    for path in root.rglob(pattern):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue  # gone since the listing
    return datetime.fromtimestamp(newest, UTC).date().isoformat() if newest > 0 else None


@lru_cache(maxsize=4)
def build_date(root: Path = PACKAGE_DIR) -> str:
    """The day this software was made or installed, never earlier than FLOOR_DATE (ISO dates compare
    as text)."""
    return max(FLOOR_DATE, newest_file_date(root) or FLOOR_DATE)
