"""The configuration reference (docs/config.md), written from the settings models themselves so it
cannot drift from what the appliance accepts: one section per TOML table, one row per key with its
type, default, allowed values and description.

    python -m edge.settings.reference > docs/config.md

tests/test_config_reference.py checks the file is what this writes now, and that every key has a
description.
"""
from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge.settings.root import Settings

# Defaults computed when the appliance starts, said in words rather than as this machine's value.
_COMPUTED: dict[Callable[[], Any], str] = {socket.gethostname: "the machine's host name"}

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class Section:
    title: str          # as the TOML file writes it, e.g. [source] with type = "replay"
    about: str          # the model's docstring, if it has one
    rows: list[Row]


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(the type inside any Annotated, the metadata Annotated carried)."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata.extend(more)
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models a value of this type is (several for a union chosen by a tag), or []."""
    annotation, _ = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if _is_union(annotation):
        found = [_unwrap(a)[0] for a in get_args(annotation)]
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in found):
            return found
    return []


def _type_name(annotation: Any) -> str:
    annotation, _ = _unwrap(annotation)
    origin = get_origin(annotation)
    if annotation is type(None):
        return "none"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        return " or ".join(_SCALARS.get(k, k.__name__) for k in sorted(kinds, key=lambda k: k.__name__))
    if _is_union(annotation):
        parts = [a for a in get_args(annotation) if a is not type(None)]
        name = " or ".join(_type_name(a) for a in parts)
        return name + (" (optional)" if len(parts) < len(get_args(annotation)) else "")
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        return f"table of {_type_name(get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return str(annotation)


def _toml(value: Any) -> str:
    """A value as the TOML file would write it."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    factory = info.default_factory
    if factory is not None:
        if factory in _COMPUTED:
            return _COMPUTED[factory]
        return _toml(factory())  # type: ignore[call-arg]
    return _toml(info.default)


def _literals(annotation: Any) -> list[Any]:
    annotation, _ = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if _is_union(annotation):
        return [v for a in get_args(annotation) for v in _literals(a)]
    return []


def _flat(metadata: list[Any]) -> list[Any]:
    """Constraints, with those of a Field() inside an Annotated alias (SafeName, ListName) taken out."""
    flat = []
    for m in metadata:
        flat.extend(_flat(m.metadata) if isinstance(m, FieldInfo) else [m])
    return flat


def _constraints(metadata: list[Any], unit: str = "characters") -> list[str]:
    said = []
    metadata = _flat(metadata)
    bounds = [(name, getattr(m, name)) for m in metadata for name in ("ge", "gt", "le", "lt")
              if getattr(m, name, None) is not None]
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    if bounds:
        said.append(", ".join(f"{symbols[name]} {_toml(value)}" for name, value in bounds))
    for m in metadata:
        if getattr(m, "min_length", None) is not None:
            said.append(f"at least {m.min_length} {unit}")
        if getattr(m, "max_length", None) is not None:
            said.append(f"at most {m.max_length} {unit}")
        if getattr(m, "pattern", None) is not None:
            said.append(f"matches `{m.pattern}`")
    return said


def _allowed(info: FieldInfo) -> str:
    annotation = info.annotation
    said = []
    values = _literals(annotation)
    if values:
        said.append("one of " + ", ".join(_toml(v) for v in values))
    inner, metadata = _unwrap(annotation)
    bare = _unwrap(next((a for a in get_args(inner) if a is not type(None)), inner) if _is_union(inner) else inner)[0]
    said += _constraints(info.metadata, "items" if get_origin(bare) in (list, dict) else "characters")
    if _is_union(inner):  # e.g. list[SafeName] | None: the constraints of what is inside
        inner = next((a for a in get_args(inner) if a is not type(None)), inner)
        inner, more = _unwrap(inner)
        metadata = metadata + more
    if get_origin(inner) is list:
        item, item_meta = _unwrap(get_args(inner)[0])
        values = _literals(item)
        if values:
            said.append("each one of " + ", ".join(_toml(v) for v in values))
        said += [f"each {c}" for c in _constraints(item_meta)]
    elif get_origin(inner) is dict:
        key, value = get_args(inner)
        keys = _literals(key)
        if keys:
            said.append("keys: " + ", ".join(_toml(v) for v in keys))
        said += [f"each key {c}" for c in _constraints(_unwrap(key)[1])]
        values = _literals(value)
        if values:
            said.append("values: " + ", ".join(_toml(v) for v in values))
        said += [f"each value {c}" for c in _constraints(_unwrap(value)[1])]
    said += _constraints(metadata, "items" if get_origin(inner) in (list, dict) else "characters")
    return "; ".join(said)


def _about(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    return " ".join(doc.split())


def _holds_tables(annotation: Any) -> bool:
    """A table, or tables by name, or an array of tables: sections of their own, not a row."""
    inner, _ = _unwrap(annotation)
    if _models(inner):
        return True
    if get_origin(inner) is dict:
        return _holds_tables(get_args(inner)[1])
    return get_origin(inner) is list and bool(_models(get_args(inner)[0]))


def _rows(model: type[BaseModel], tag: str | None) -> list[Row]:
    rows = []
    for name, info in model.model_fields.items():
        if name != tag and _holds_tables(info.annotation):
            continue
        if name == tag:
            rows.append(Row(name, "string", "required", f"{_toml(_literals(info.annotation)[0])} for this kind",
                            info.description or f"Chooses this kind of {model.__name__}."))
            continue
        rows.append(Row(name, _type_name(info.annotation), _default(info), _allowed(info), info.description or ""))
    return rows


def _discriminator(info: FieldInfo | None, annotation: Any) -> str | None:
    if info is not None and isinstance(info.discriminator, str):
        return info.discriminator
    for meta in _unwrap(annotation)[1]:
        if isinstance(getattr(meta, "discriminator", None), str):
            return str(meta.discriminator)
    return None


def _walk(model: type[BaseModel], path: str, title: str, tag: str | None = None) -> Iterator[Section]:
    yield Section(title, _about(model), _rows(model, tag))
    for name, info in model.model_fields.items():
        yield from _walk_field(f"{path}.{name}" if path else name, info, info.annotation)


def _walk_field(path: str, info: FieldInfo | None, annotation: Any) -> Iterator[Section]:
    models = _models(annotation)
    tag = _discriminator(info, annotation)
    if models and tag:
        for model in models:
            kind = _literals(model.model_fields[tag].annotation)[0]
            yield from _walk(model, path, f"[{path}] with {tag} = {_toml(kind)}", tag)
        return
    if models:
        yield from _walk(models[0], path, f"[{path}]")
        return
    inner, _ = _unwrap(annotation)
    if get_origin(inner) is dict:
        key, value = get_args(inner)
        if _holds_tables(value):
            keys = _literals(key)
            name = "|".join(str(k) for k in keys) if keys else "NAME"
            yield from _walk_field(f"{path}.<{name}>", None, value)
    elif get_origin(inner) is list and _models(get_args(inner)[0]):
        yield from _walk(_models(get_args(inner)[0])[0], path, f"[[{path}]]")


def sections() -> list[Section]:
    """Every table of the configuration file, in the order Settings declares them."""
    return list(_walk(Settings, "", "(top level)"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    out = ["# Configuration reference", "",
           "Every key of the appliance's TOML configuration file (`/etc/checkpoint/checkpoint.toml`), table by "
           "table. Unknown keys, wrong types and values out of range are refused with the key's name; "
           "`checkpoint config check` says so before a restart does.", "",
           "Generated from the settings models (`edge/settings/`) by `python -m edge.settings.reference > "
           "docs/config.md`; do not edit by hand: `tests/test_config_reference.py` fails when it is stale.", ""]
    for section in sections():
        if not section.rows:
            continue
        title = section.title if section.title == "(top level)" else f"`{section.title}`"
        out += [f"## {title}", ""]
        if section.about:
            out += [section.about, ""]
        out += ["| Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
        for row in section.rows:
            out.append(f"| `{row.key}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.allowed)} | "
                       f"{_cell(row.description)} |")
        out.append("")
    return "\n".join(out)


def undescribed() -> list[str]:
    """Keys without a description, as section: key."""
    return [f"{s.title}: {r.key}" for s in sections() for r in s.rows if not r.description]


if __name__ == "__main__":
    sys.stdout.write(markdown())
