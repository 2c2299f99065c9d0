"""Entries out as CSV or JSON lines, the same on the device and at the hub."""
from __future__ import annotations

import csv
import json
import sys
from typing import Iterable, TextIO

from .clock import iso_ms


def write_entries(rows: Iterable[dict], fmt: str, stream: TextIO | None = None) -> int:
    """Each row with a readable UTC `time` first; csv (a header from the first row) or json (one object a line)."""
    stream = stream or sys.stdout
    writer = None
    count = 0
    for row in rows:
        row = {"time": iso_ms(row["wall_ms"]), **row}
        count += 1
        if fmt == "json":
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            continue
        if writer is None:
            writer = csv.DictWriter(stream, fieldnames=list(row), lineterminator="\n")
            writer.writeheader()
        writer.writerow(row)
    return count
