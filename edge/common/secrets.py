"""Where a secret file is: a path as given, or a systemd credential's name."""
from __future__ import annotations

import os
from pathlib import Path


def secret_path(value: str) -> Path:
    """A path as given, or the name of a systemd credential (LoadCredential=) in $CREDENTIALS_DIRECTORY."""
    path = Path(value)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and not path.is_absolute() and "/" not in value and (Path(credentials) / value).exists():
        return Path(credentials) / value
    return path
