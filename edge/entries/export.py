"""Entries out as CSV or JSON lines, the same on the device and at the hub."""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from edge.common.clock import iso_ms
from edge.common.textsafe import csv_cell


def write_entries(rows: Iterable[dict[str, Any]], fmt: str, stream: TextIO | None = None) -> int:
    """Each row with a readable UTC `time` first; csv (a header from the first row) or json (one object a line).

    CSV cells a spreadsheet would run as a formula are neutralised; JSON stays exact. Rows end in CRLF
    (RFC 4180), so the writer quotes any field holding a CR or LF: a code cannot start a row of its own."""
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
            writer = csv.DictWriter(stream, fieldnames=list(row), lineterminator="\r\n")
            writer.writeheader()
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return count
