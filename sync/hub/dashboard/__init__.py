"""`checkpoint-hub serve`: the hub's read-only web dashboard and its Prometheus metrics."""
