"""The hub database's tables, for SQLite and PostgreSQL alike ({blob} is BLOB or BYTEA, {serial} an
auto-numbered key), and what was added to them since the first release (added to an older database when it
is opened for writing: the migration).

hub_entries' entry columns are those of the device's entry record (edge/entries/record.py HUB_FIELDS);
tests/test_hub_cli.py checks the created tables against it on both databases."""
from __future__ import annotations

COLUMNS = ("id", "device_id", "seq", "wall_ms", "mono_ns", "boot_id", "source", "code", "decision", "reason",
           "list_name", "list_version", "config_version", "clock", "ref_id", "officer", "sent_ms", "received_ms",
           "clock_offset_ms")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hub_entries (
        id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_ms BIGINT NOT NULL,
        mono_ns BIGINT NOT NULL, boot_id TEXT NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, list_name TEXT, list_version BIGINT, config_version TEXT,
        clock TEXT NOT NULL, ref_id TEXT, officer TEXT, sent_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
        clock_offset_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hub_entries_device_seq ON hub_entries (device_id, seq)",
    "CREATE INDEX IF NOT EXISTS hub_entries_wall ON hub_entries (wall_ms)",
    """CREATE TABLE IF NOT EXISTS hub_devices (
        device_id TEXT PRIMARY KEY, last_seen_ms BIGINT NOT NULL, max_seq BIGINT NOT NULL,
        entries BIGINT NOT NULL, duplicates BIGINT NOT NULL, clock_offset_ms BIGINT NOT NULL,
        conflicts BIGINT NOT NULL DEFAULT 0)""",
    # The newest status each device published (retained), and when it went on- or offline.
    """CREATE TABLE IF NOT EXISTS hub_status (
        device_id TEXT PRIMARY KEY, state TEXT NOT NULL, since_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL,
        status TEXT NOT NULL)""",
    # Every bundle's acknowledgement: accepted, or refused with the reason.
    """CREATE TABLE IF NOT EXISTS hub_acks (
        device_id TEXT NOT NULL, target TEXT, kind TEXT NOT NULL, name TEXT, version BIGINT,
        accepted BOOLEAN NOT NULL, reason TEXT, time_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
        digest TEXT)""",
    "CREATE INDEX IF NOT EXISTS hub_acks_device ON hub_acks (device_id, received_ms)",
    # What administrators pushed: the next version per target, kind and list name comes from here.
    """CREATE TABLE IF NOT EXISTS hub_bundles (
        target TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL,
        issued_ms BIGINT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (target, kind, name, version))""",
    # Messages the collector refused, kept aside for an administrator: one row per topic and content,
    # however often it came (a retained message comes again with every new subscription).
    """CREATE TABLE IF NOT EXISTS hub_rejected (
        topic TEXT NOT NULL, sha256 TEXT NOT NULL, device_id TEXT, reason TEXT NOT NULL, first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL, times BIGINT NOT NULL, size BIGINT NOT NULL, payload {blob} NOT NULL,
        PRIMARY KEY (topic, sha256))""",
    "CREATE INDEX IF NOT EXISTS hub_rejected_last ON hub_rejected (last_ms)",
    "CREATE INDEX IF NOT EXISTS hub_rejected_device ON hub_rejected (device_id, last_ms)",
]
# Tables added since the first release (CREATE IF NOT EXISTS is the migration, run whenever a database is
# opened for writing). Apart from SCHEMA, whose statements older tools format with {blob} alone.
ADDED_TABLES = [
    # Each device's status changes, the newest STATUS_HISTORY_PER_DEVICE kept.
    # n orders them (two statuses may arrive within one millisecond).
    """CREATE TABLE IF NOT EXISTS hub_status_history (
        n {serial}, device_id TEXT NOT NULL, received_ms BIGINT NOT NULL, state TEXT NOT NULL,
        clock_offset_ms BIGINT, status TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hub_status_history_device ON hub_status_history (device_id, n)",
]
# Columns added since the first release, added to an older database when it is opened for writing.
ADDED_COLUMNS = [("hub_devices", "conflicts", "BIGINT NOT NULL DEFAULT 0"),
                 ("hub_entries", "ref_id", "TEXT"), ("hub_entries", "officer", "TEXT"),
                 # the SHA-256 of the message a device answered: a bundle refused before its header could be
                 # trusted (an unknown key) is matched to the push by it
                 ("hub_acks", "digest", "TEXT")]
# The tables a hub database has had from the first release: a read-only open of anything else is refused.
TABLES = ("hub_entries", "hub_devices", "hub_status", "hub_acks", "hub_bundles")
