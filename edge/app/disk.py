"""Free space where the database lives: in the daemon's status (and its problems) and in the doctor's report."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def disk(path: Path) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"error": str(exc)}
    return {"free_mb": usage.free // 2**20, "total_mb": usage.total // 2**20,
            "free_percent": round(100 * usage.free / usage.total, 1) if usage.total else 0.0}
