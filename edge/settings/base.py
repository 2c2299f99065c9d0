"""What every settings model shares: strict, frozen, unknown keys refused; the error a bad config is."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edge.common.errors import UsageError


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the offending keys."""


class ConfigModel(BaseModel):
    """A TOML table: unknown keys, wrong types and out-of-range values are refused, never defaulted."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---- names ---------------------------------------------------------------------------------------
# A device id and a group name become MQTT topic levels and parts of file names: no '.' or '..' (a path
# step), no leading '-' (an option to any command given the name), no wildcard or separator.
SAFE_NAME = r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$"


def _not_dots(value: str) -> str:
    if value in (".", ".."):
        raise ValueError(f"{value!r} is a path step, not a name")
    return value


SafeName = Annotated[str, Field(pattern=SAFE_NAME), AfterValidator(_not_dots)]
# A list's name, as edge.lists.NAME accepts it (a name it refuses could never be imported, so never found).
LIST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ListName = Annotated[str, Field(pattern=LIST_NAME)]
