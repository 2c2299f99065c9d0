"""The record: every decision committed to SQLite before the gate moves, and exported the same way everywhere."""
