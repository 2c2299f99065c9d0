"""Small JSON state files beside the database (status.json, sync.json), replaced atomically so a reader
never sees half a file."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("checkpoint.state")


def write_json(path: Path, data: dict) -> bool:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
        os.replace(tmp, path)
        return True
    except (OSError, TypeError, ValueError) as exc:
        log.warning("cannot write %s: %s", path, exc)
        return False
