"""The hub: collector, database, the administrator's pushes, the `checkpoint-hub` command and the dashboard."""
