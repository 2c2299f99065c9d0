"""What the officer page shows, already in words: the rows of the scan list and the health panel.

edge/ui/officer.py handles the requests; this reads scan events (edge/ui/events.scan_event, or store rows) and
the daemon's status, and gives the templates plain strings and levels.
"""
from __future__ import annotations

from datetime import timezone, tzinfo
from typing import Any

from edge.ui import i18n
from edge.ui.context import UIContext

Words = dict[str, Any]
Row = dict[str, Any]

SYMBOLS = {"allow": "✓", "deny": "✗", "review": "?"}


def say(words: Words, key: str, **fields: object) -> str:
    """The words for key with fields filled in; a catalogue's broken pattern shows as it stands."""
    text = str(words.get(key, key))
    try:
        return text.format(**fields) if fields else text
    except (KeyError, IndexError, ValueError):
        return text


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def row(context: UIContext, words: Words, event: dict[str, Any], answers: dict[str, Row], now_ms: int) -> Row:
    """One scan as the list shows it: everything already in words."""
    tz = i18n.zone(context.timezone)
    wall_ms = event.get("wall_ms")
    wall = wall_ms if isinstance(wall_ms, int) else 0
    decision = _text(event.get("decision")) or "deny"
    source = _text(event.get("source"))
    list_name, version = event.get("list_name"), event.get("list_version")
    entry_id = _text(event.get("id"))
    shown: Row = {
        "id": entry_id, "ref_id": event.get("ref_id") or "", "decision": decision,
        "decision_word": i18n.decision_word(words, decision), "symbol": SYMBOLS.get(decision, "·"),
        "reason": event.get("reason") or "unknown", "reason_text": i18n.reason_text(words, event, tz, now_ms),
        "label": event.get("label") or "", "code": event.get("code") or "",
        "list": f"{list_name} v{version}" if list_name and version is not None else list_name or "",
        "source": {"manual": words.get("source_manual"), "review": words.get("source_review")}.get(source)
        or source.partition(":")[0], "source_full": source, "officer": event.get("officer") or "", "wall_ms": wall,
        "time": i18n.time_of_day(words, wall, tz), "date": i18n.date(words, wall, tz), "state": ""}
    if decision == "review" and source != "review":
        answer = answers.get(entry_id)
        expires = wall + int(context.settings.review_expiry_s * 1000)
        shown["expires_ms"] = expires
        if answer is not None:
            shown["state"] = "answered"
            shown["answer"] = say(words, "answered", decision=i18n.decision_word(words, answer["decision"]),
                                  officer=answer.get("officer") or "?")
        elif now_ms >= expires:
            shown["state"] = "expired"
        else:
            shown["state"] = "waiting"
    return shown


def with_repeats(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store rows (newest first) do not keep when a repeated code was allowed before; the list itself shows it,
    so "Already scanned at 08:14" reads the same whether the row came live or from the database."""
    out = []
    for index, entry in enumerate(entries):
        if entry.get("reason") == "repeated" and entry.get("repeated_at_ms") is None:
            earlier = next((e for e in entries[index + 1:] if e.get("code") == entry.get("code")
                            and e.get("decision") == "allow"), None)
            if earlier is not None:
                entry = {**entry, "repeated_at_ms": earlier.get("wall_ms")}
        out.append(entry)
    return out


def answers(rows: list[dict[str, Any]]) -> dict[str, Row]:
    """The officers' answers among the rows, by the id of the review they answer."""
    return {r["ref_id"]: r for r in rows if r.get("ref_id") and r.get("source") == "review"}


def health(words: Words, status: dict[str, Any], tz: tzinfo | timezone) -> list[dict[str, str]]:
    """What `checkpoint status` shows, in words, each with a level: ok, warn, bad."""
    def item(key: str, text: str, level: str) -> dict[str, str]:
        return {"name": words.get(key, key), "text": text, "level": level}

    def get(*path: str) -> Any:
        value: Any = status
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    unknown = words.get("unknown", "?")
    out = []
    state = get("source", "state")
    name = get("source", "name")
    out.append(item("health_source", f"{(words.get('source_state') or {}).get(state, state or unknown)}"
                    + (f" ({name})" if name else ""), "ok" if state in ("ok", "finished") else "bad"))
    clock, trusted = get("clock", "state"), get("clock", "trusted")
    shown = (words.get("clock_state") or {}).get(clock, clock or unknown)
    out.append(item("health_clock", say(words, "clock_trusted" if trusted else "clock_untrusted", state=shown),
                    "bad" if not trusted else "ok" if clock == "ok" else "warn"))
    stale, missing = get("stale_lists") or [], get("missing_lists") or []
    lists = get("lists") if isinstance(get("lists"), dict) else {}
    texts = [say(words, "list_info", name=n, version=(i or {}).get("version", "?"), age=(i or {}).get("age_h", "?"))
             + (f" — {say(words, 'list_stale', name=n)}" if n in stale else "") for n, i in lists.items()]
    texts += [say(words, "list_missing", name=n) for n in missing]
    out.append(item("health_lists", "; ".join(texts) or words.get("no_lists", ""),
                    "bad" if stale or missing else "ok" if lists else "warn"))
    store = get("store")
    if isinstance(store, dict):
        text = words.get("store_ok") if store.get("healthy") else say(words, "store_bad", error=store.get("error"))
        if store.get("held"):
            text = f"{text}; {say(words, 'store_held', held=store.get('held'))}"
        out.append(item("health_store", str(text), "ok" if store.get("healthy") else "bad"))
        disk = store.get("disk") or {}
        if "free_mb" in disk:
            percent = disk.get("free_percent") or 0
            out.append(item("health_disk", say(words, "disk_free", free=disk["free_mb"], percent=percent),
                            "bad" if percent < 2 else "warn" if percent < 10 else "ok"))
    out += _sync_health(words, get("sync"), tz, item)
    problems = get("problems") or []
    if problems:
        out.append(item("health_problems", "; ".join(str(p) for p in problems), "bad"))
    return out


def _sync_health(words: Words, sync: Any, tz: tzinfo | timezone, item: Any) -> list[dict[str, str]]:
    if not (isinstance(sync, dict) and sync.get("enabled", True) is not False):
        return [item("health_sync", words.get("sync_off", ""), "warn")]
    connection = sync.get("connection") or "unknown"
    last = sync.get("last_sync_ms")
    last = i18n.date_time(words, last, tz) if isinstance(last, int) else sync.get("last_sync") or words.get("never")
    text = say(words, "sync_state", connection=(words.get("sync_connection") or {}).get(connection, connection),
               last=last)
    depth = (sync.get("outbox") or {}).get("depth")
    if isinstance(depth, int):
        text += "; " + say(words, "sync_outbox", depth=depth)
    out = [item("health_sync", text, "ok" if connection == "online" else "warn")]
    refused = (sync.get("remote") or {}).get("last_rejected")
    if isinstance(refused, dict):
        out.append(item("health_refused", f"{refused.get('kind') or '-'} {refused.get('name') or ''} "
                        f"v{refused.get('version') or '-'}: {refused.get('reason') or ''}", "warn"))
    else:
        out.append(item("health_refused", words.get("none", ""), "ok"))
    return out
