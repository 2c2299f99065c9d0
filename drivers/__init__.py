"""Hardware at the edge: frame and text sources, gate outputs. Hardware modules are imported lazily."""
