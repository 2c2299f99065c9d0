"""Named allow/deny lists cached on the device: a catalog (lists.db) and one SQLite file per list version,
with a keys file beside it when the list holds keyed hashes rather than readable codes.

The modules, in the order a list's data goes through them:
    records    ListError (the family; ListUnreadable: SQLite's errors translated), ListInfo (a catalog row),
               Match (a lookup's answer), Row, the list-name rule
    hashing    keyed hashes of codes (HMAC-SHA256 cut to 16 bytes), so no readable ID number is stored;
               a hashing key's id and its file
    csvrows    a CSV list parsed lazily and strictly
    keysfile   a hashed list's keys: 17 bytes an entry, one 4 KiB read per lookup
    listfile   a list version's SQLite file: its schema, how it is built and opened
    rows       every entry of a list file, in key order, its overlay applied
    snapshot   the read side: the files lookups read, in one snapshot renewed on commit or after HOLD_S
    delta      a delta into a file's overlay, and the overlay folded into the entries
    repair     start-up migration and repair after a power cut
    store      ListStore: the catalog and every operation on lists

This package exports what the rest of the appliance uses; its modules are its own business.
"""
from edge.lists.csvrows import COLUMNS
from edge.lists.hashing import HASH_BYTES, KeyedHash, hash_code, hash_key_id, read_hash_key_file, read_hash_keys
from edge.lists.records import MAX_LABEL, NAME, ListError, ListInfo, ListUnreadable, Match, check_name
from edge.lists.rows import file_rows
from edge.lists.snapshot import HOLD_S
from edge.lists.store import ListStore

__all__ = ["COLUMNS", "HASH_BYTES", "HOLD_S", "MAX_LABEL", "NAME", "KeyedHash", "ListError", "ListInfo",
           "ListStore", "ListUnreadable", "Match", "check_name", "file_rows", "hash_code", "hash_key_id",
           "read_hash_key_file", "read_hash_keys"]
