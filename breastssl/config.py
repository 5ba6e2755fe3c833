"""Typed configuration: pydantic models loaded from YAML with dotted command-line overrides.

Every config section derives from :class:`Section`, which forbids unknown keys, so a typo such as
``optim.lrr`` is an error naming the key (with a suggestion) rather than a silently ignored setting.

A YAML file may start from another one with ``_base_: other.yaml`` (a path relative to the file);
mappings are merged key by key, everything else is replaced.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError
from .fsutil import atomic_file

T = TypeVar("T", bound="Section")


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``: nested mappings merge, other values replace."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, following ``_base_`` links (relative to the file that names them)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is not None:
        data = deep_merge(read_yaml(path.parent / base), data)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return ``data`` with each ``key.path=value`` override set.

    A dotted override changes one key of the *effective* value: a mapping on the path that ``data``
    does not set starts from ``defaults`` (the model's default values), so ``--set contrast.malignant=…``
    keeps the default ``contrast.benign`` instead of dropping it.
    """
    data = dict(data)
    for text in overrides:
        parts, value = parse_override(text)
        node, base = data, defaults
        for i, part in enumerate(parts[:-1]):
            base = base.get(part) if isinstance(base, Mapping) else None
            child = node.get(part)
            if child is None:
                child = dict(base) if isinstance(base, Mapping) else {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields valid at ``loc`` (the parent of a bad key), for suggestions."""
    cls: Any = model
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))


def format_validation_error(model: type[BaseModel], err: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted key, with a suggestion for unknown keys."""
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            names = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
            valid = f"; valid keys here: {', '.join(names)}" if names else ""
            lines.append(f"  unknown key '{key}'{hint}{valid}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def build_config(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Validate a mapping into ``cls``, turning pydantic's errors into a :class:`ConfigError`."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(cls, err, source)) from None


def _defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """The model's default values as plain data ({} if some field has no default)."""
    try:
        return cls().model_dump(mode="python")
    except ValidationError:
        return {}


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file plus ``key.path=value`` overrides."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides, _defaults(cls))
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " + --set " + " ".join(overrides)
    return build_config(cls, data, source)


def save_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config (every default spelled out) as YAML, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
