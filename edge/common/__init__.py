"""What every layer of the device may use: time, safe text, small state files, SQLite, the pipeline's values."""
