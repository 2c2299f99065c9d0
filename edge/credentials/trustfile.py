"""trust.json: the device's copy of an EU DCC Gateway trust list, with its version and import time.

    {"format": 1, "version": 3, "imported_ms": ..., "source": "gateway.json" | "hub", "sha256": "...",
     "signers": 42, "certificates": [ ...the Gateway entries, as given... ]}

`load_trust_list` reads it as it reads the Gateway file itself (an object with a "certificates" array).
A list is checked before it is stored: a file that is not a trust list, or one in which no certificate is
usable, is refused and the file in place stays. It is written whole and renamed into place
(edge.common.statefile), so a scan reads the old list or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edge.common.statefile import StateFileError, read_json, write_private
from edge.common.textsafe import for_log
from edge.credentials.trust import (
    MAX_FILE_BYTES,
    TrustList,
    TrustListError,
    load_trust_list,
)

FILE_NAME = "trust.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class TrustMeta:
    version: int
    imported_ms: int
    source: str | None
    sha256: str
    signers: int


def default_path(store_dir: str | Path) -> Path:
    return Path(store_dir) / FILE_NAME


def check(data: bytes) -> tuple[list[object], TrustList]:
    """The Gateway entries and the signers they give; TrustListError when nothing usable is in it."""
    trust = load_trust_list(data)
    if len(trust) == 0:
        detail = f" ({'; '.join(trust.skipped[:3])})" if trust.skipped else ""
        raise TrustListError(f"no usable signer certificate in the trust list{detail}")
    doc = json.loads(data)
    entries = doc["certificates"] if isinstance(doc, dict) else doc
    return entries, trust


def read_meta(path: str | Path) -> TrustMeta | None:
    """What trust.json says of itself; None when there is none; TrustListError when it cannot be used."""
    try:
        doc = read_json(Path(path))
    except StateFileError as exc:
        raise TrustListError(str(exc)) from exc
    if doc is None:
        return None
    version, imported = doc.get("version"), doc.get("imported_ms")
    if type(version) is not int or type(imported) is not int or version < 1 or imported < 0:
        raise TrustListError(f"{for_log(str(path))}: no version or import time")
    source = doc.get("source")
    return TrustMeta(version, imported, source if isinstance(source, str) else None,
                     str(doc.get("sha256", "")), int(doc.get("signers", 0)) if type(doc.get("signers")) is int else 0)


def store(data: bytes, path: str | Path, *, now_ms: int, version: int | None = None,
          source: str | None = None, newer_only: bool = True) -> TrustMeta:
    """Check the Gateway list `data` and write it as trust.json at `path`. Without a version, one more than
    the stored one. A version not newer than the stored one is refused (a replayed older list), unless
    newer_only is false (a pushed list, whose versions the receiver judges per target)."""
    if len(data) > MAX_FILE_BYTES:
        raise TrustListError(f"trust list larger than {MAX_FILE_BYTES} bytes")
    entries, trust = check(data)
    try:
        current = read_meta(path)
    except TrustListError:
        current = None  # a damaged trust.json is replaced by a good list, never kept instead of one
    latest = current.version if current else 0
    if version is None:
        version = latest + 1
    elif version <= latest and newer_only:
        raise TrustListError(f"version {version} is not newer than the stored {latest}")
    meta = TrustMeta(version, now_ms, source, hashlib.sha256(data).hexdigest(), len(trust))
    doc = {"format": FORMAT, "version": meta.version, "imported_ms": meta.imported_ms, "source": meta.source,
           "sha256": meta.sha256, "signers": meta.signers, "certificates": entries}
    write_private(Path(path), json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return meta


Stamp = tuple[int, int, int]  # inode, mtime in ns, size


def stamp(path: str | Path) -> Stamp | None:
    """What changes when trust.json is replaced (a rename gives a new inode); None when there is none."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
