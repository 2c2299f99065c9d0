"""The process: settings, the pipeline's threads, the daemon's lifecycle, the `checkpoint` command, health."""
