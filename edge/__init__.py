"""The checkpoint daemon's core: decode, decide, record, signal. Never imports hardware libraries."""
