"""What the dashboard reads from the hub database, read-only, on SQLite and PostgreSQL alike.

HubDB's own queries are used where they fit (fleet, acks, gaps, devices, rejected); the searches and
summaries only the dashboard needs are here, written for both backends (HubDB._sql turns ? into %s)."""
from __future__ import annotations

from sync.hub.hubdb import COLUMNS, HubDB

MAX_ROWS = 10_000   # entries one search returns (an export too): a page is not a bulk dump


def _tables(db: HubDB) -> set[str]:
    return db._tables()


def search_entries(db: HubDB, *, device: str | None = None, since_ms: int | None = None,
                   until_ms: int | None = None, decision: str | None = None, reason: str | None = None,
                   text: str | None = None, limit: int = 500) -> list[dict]:
    """Newest first. `text` matches a code or a list name (the label a device shows) as a substring."""
    where: list[str] = []
    params: list[object] = []
    for column, value in (("device_id", device), ("decision", decision), ("reason", reason)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if since_ms is not None:
        where.append("wall_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append("wall_ms < ?")
        params.append(until_ms)
    if text:
        # instr/strpos, not LIKE: a % or _ in what was typed is a character, not a wildcard.
        find = "strpos({}, ?) > 0" if db.pg else "instr({}, ?) > 0"
        where.append("(" + find.format("code") + " OR " + find.format("COALESCE(list_name, '')") + ")")
        params += [text, text]
    sql = (f"SELECT {db._entry_select} FROM hub_entries" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY wall_ms DESC, device_id, seq DESC LIMIT ?")
    params.append(max(1, min(limit, MAX_ROWS)))
    with db.transaction() as cur:
        cur.execute(db._sql(sql), params)
        return [dict(zip(COLUMNS, row)) for row in cur.fetchall()]


def decisions(db: HubDB) -> list[tuple[str, str, str, int]]:
    """(device, decision, reason, count) over every stored entry."""
    with db.transaction() as cur:
        cur.execute("SELECT device_id, decision, reason, COUNT(*) FROM hub_entries "
                    "GROUP BY device_id, decision, reason")
        return [(r[0], r[1], r[2], int(r[3])) for r in cur.fetchall()]


def refused_counts(db: HubDB) -> dict[str, int]:
    """device -> bundles it refused."""
    with db.transaction() as cur:
        cur.execute("SELECT device_id, COUNT(*) FROM hub_acks WHERE NOT accepted GROUP BY device_id")
        return {r[0]: int(r[1]) for r in cur.fetchall()}


def rejected_messages(db: HubDB) -> int:
    """Messages the collector refused, each repeat counted."""
    if "hub_rejected" not in _tables(db):
        return 0
    with db.transaction() as cur:
        cur.execute("SELECT COALESCE(SUM(times), 0) FROM hub_rejected")
        return int(cur.fetchone()[0])


def pushed(db: HubDB) -> list[dict]:
    """The newest bundle per target, kind and list name: what is pushed now (retained at the broker)."""
    with db.transaction() as cur:
        cur.execute("SELECT b.target, b.kind, b.name, b.version, b.issued_ms, b.sha256 FROM hub_bundles b "
                    "JOIN (SELECT target, kind, name, MAX(version) AS v FROM hub_bundles "
                    "GROUP BY target, kind, name) m ON b.target = m.target AND b.kind = m.kind "
                    "AND b.name = m.name AND b.version = m.v ORDER BY b.target, b.kind, b.name")
        cols = ("target", "kind", "name", "version", "issued_ms", "sha256")
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def latest_acks(db: HubDB) -> list[dict]:
    """Each device's newest answer per target, kind, name and version."""
    cols = ("device_id", "target", "kind", "name", "version", "accepted", "reason", "time_ms", "received_ms")
    with db.transaction() as cur:
        cur.execute(f"SELECT {', '.join('a.' + c for c in cols)} FROM hub_acks a JOIN (SELECT device_id, target, "
                    "kind, COALESCE(name, '') AS name, version, MAX(received_ms) AS m FROM hub_acks "
                    "GROUP BY device_id, target, kind, COALESCE(name, ''), version) l "
                    "ON a.device_id = l.device_id AND a.target = l.target AND a.kind = l.kind "
                    "AND COALESCE(a.name, '') = l.name AND a.version = l.version AND a.received_ms = l.m "
                    "ORDER BY a.received_ms DESC")
        return [dict(zip(cols, r), accepted=bool(r[5])) for r in cur.fetchall()]


def offsets(db: HubDB, device: str, limit: int = 200) -> list[tuple[int, int]]:
    """(received_ms, clock offset ms) per batch received from the device, newest first."""
    with db.transaction() as cur:
        cur.execute(db._sql("SELECT received_ms, MAX(clock_offset_ms) FROM hub_entries WHERE device_id = ? "
                            "GROUP BY received_ms ORDER BY received_ms DESC LIMIT ?"), (device, limit))
        return [(int(r[0]), int(r[1])) for r in cur.fetchall()]


def refused_now(db: HubDB) -> set[str]:
    """Devices whose newest answer for some target, kind and list is a refusal (a later acceptance of the
    same target clears it: the device caught up). A list's snapshot and delta count as one kind."""
    kind = "CASE WHEN kind IN ('list-snapshot', 'list-delta') THEN 'list' ELSE kind END"
    key = f"COALESCE(target, ''), {kind}, COALESCE(name, '')"
    with db.transaction() as cur:
        cur.execute(f"SELECT device_id, accepted FROM (SELECT device_id, accepted, ROW_NUMBER() OVER ("
                    f"PARTITION BY device_id, {key} ORDER BY received_ms DESC) AS n FROM hub_acks) t WHERE n = 1")
        return {r[0] for r in cur.fetchall() if not r[1]}
