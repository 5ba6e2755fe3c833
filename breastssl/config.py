"""Typed configuration: pydantic models loaded from YAML with dotted command-line overrides.

Every config section derives from :class:`Section`, which forbids unknown keys, so a typo such as
``optim.lrr`` is an error naming the key (with a suggestion) rather than a silently ignored setting.
Section floats must be finite, and values read from YAML or ``--set`` are type-checked strictly
(:func:`strict_problems`): ``steps: true`` is an error, not 1 (a YAML ``1`` is still a valid float).

A YAML file may start from another one with ``_base_: other.yaml`` (a path relative to the file);
mappings are merged key by key, everything else is replaced. YAML is read by :func:`load_yaml_text`,
which refuses what no config needs and a hostile or broken file would use: duplicate keys, nesting
deeper than :data:`MAX_DEPTH`, aliases expanding beyond :data:`MAX_NODES` values, ``_base_`` cycles.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .fsutil import atomic_file

T = TypeVar("T", bound="Section")

MAX_DEPTH = 64  # nesting levels: configs use about 4; deeper input would exhaust the parser's recursion
MAX_NODES = 100_000  # values after alias expansion: configs hold hundreds; a "billion laughs" file holds 10^9
MAX_BASES = 16  # length of a _base_ chain
MAX_BYTES = 1 << 20  # a config file is a few kilobytes; a bigger file is not one (and would parse for minutes)
MIN_SIDE, MAX_SIDE = 16, 8192  # image sides: below 16 the backbones' strides leave nothing, above 8192 no scanner

# shared constrained types: one definition of "a valid seed / image size" for every section
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy and torch generators take 32-bit seeds, never negative
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]
ImageSize = tuple[Side, Side]  # (height, width) in pixels


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``: nested mappings merge, other values replace."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits (depth, duplicate keys) and YAML 1.2 floats such as ``1e-4``.

    PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a string; with strict float fields that would
    reject the most common way to write a learning rate, so exponent floats resolve as floats here.
    """

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # the composer recurses once per level: refuse deep input before Python's recursion limit does
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(f"{self.source}: nested more than {MAX_DEPTH} levels deep (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        # checked on the composed node, before merge keys (<<) are flattened into it: only keys written twice count
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{self.source}: duplicate key {key_node.value!r} at line {line} (first at line {seen[key]}); "
                    "YAML would silently keep only the last one"
                )
            seen[key] = line
        return node


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Values of the document once aliases are expanded (memoised per node: linear in the file's size).

    Raises a :class:`ConfigError` for a document that expands beyond :data:`MAX_NODES` values or
    :data:`MAX_DEPTH` levels, or holds an alias inside its own anchor (a recursive structure).
    """
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
    active: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in active:
            raise ConfigError(f"{source}: an alias refers to its own anchor (line {node.start_mark.line + 1})")
        if key not in memo:
            if depth > MAX_DEPTH:
                raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep once aliases are expanded")
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            active.add(key)
            size, height = 1, 0
            for child in children:
                child_size, child_height = walk(child, depth + 1)
                size, height = size + child_size, max(height, child_height)
                if size > MAX_NODES:
                    raise ConfigError(
                        f"{source}: expands to more than {MAX_NODES} values through aliases (*name); a config "
                        "never needs that many (is this a 'billion laughs' file?)"
                    )
            active.discard(key)
            memo[key] = (size, height + 1)
        size, height = memo[key]
        if depth + height - 1 > MAX_DEPTH:
            raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep once aliases are expanded")
        return size, height

    return walk(root, 1)[0]


def _parse_yaml(text: str, source: str) -> Any:
    """One YAML document under the limits of :class:`_ConfigLoader`; YAML syntax errors propagate."""
    loader = _ConfigLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, source)
        return loader.construct_document(node)
    except RecursionError:  # a last guard: the limits above should stop every deep input first
        raise ConfigError(f"{source}: nested too deeply") from None
    finally:
        loader.dispose()


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document with the limits of :class:`_ConfigLoader` (``source`` names it in errors).

    Every problem, a YAML syntax error included, is a :class:`ConfigError`; an empty document is None.
    """
    try:
        return _parse_yaml(text, source)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None


def _read_text(path: Path) -> str:
    """The text of a config file, or a ConfigError saying why it cannot be read."""
    try:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"config file {path} is {path.stat().st_size} bytes; a config is at most {MAX_BYTES}")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a YAML file?)") from None
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"config file {str(path)[:200]} cannot be read ({exc.strerror or exc})") from None


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, following ``_base_`` links (relative to the file that names them).

    ``_chain`` holds the files already on the way here: a file met twice is a cycle, reported as such.
    """
    path = Path(path)
    text = _read_text(path)
    here = path.resolve()
    if here in _chain:
        loop = " -> ".join(p.name for p in (*_chain[_chain.index(here) :], here))
        raise ConfigError(f"config file {path}: its _base_ links form a cycle ({loop})")
    if len(_chain) >= MAX_BASES:
        raise ConfigError(f"config file {path}: more than {MAX_BASES} _base_ files in a chain")
    data = load_yaml_text(text, f"config file {path}")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"config file {path}: _base_ must be one file name (a path relative to this file), not {base!r}"
            )
        data = deep_merge(read_yaml(path.parent / base, (*_chain, here)), data)
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
        value = _parse_yaml(raw, f"override {key.strip()}") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: the text itself (e.g. a path with a colon); too deep or too large stays an error
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


def _shown(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut short: a message must stay one readable line even for a huge value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _strip(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` (constraints are pydantic's to check)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def strict_problems(annotation: Any, value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(key path, message) for every value of the wrong scalar type under ``annotation`` (a model or a type).

    pydantic's lax mode takes ``true`` for 1, ``1.0`` for an int and ``1`` or ``"yes"`` for a boolean; a
    config key's value must have the key's type instead (an int is still a valid float). Containers (tuples,
    lists, dicts, unions, nested sections) are walked; every other type is left to pydantic.
    """
    ann = _strip(annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        if not isinstance(value, dict):
            return []
        out = []
        for key, item in value.items():
            field = ann.model_fields.get(key) if isinstance(key, str) else None
            if field is not None:
                out += strict_problems(field.annotation, item, (*loc, key))
        return out
    if origin in (typing.Union, types.UnionType):
        members = [_strip(a) for a in args if a is not type(None)]
        if value is None and len(members) < len(args):
            return []
        if len(members) == 1:
            return strict_problems(members[0], value, loc)
        if isinstance(value, bool) and bool not in members and ({int, float} & set(members)):
            return [(loc, f"a boolean is not a number (got {value!r})")]
        return []
    if origin in (tuple, list, set, frozenset) and isinstance(value, (list, tuple)):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            items = list(zip(args, value, strict=False))  # a wrong length is pydantic's to report
        else:
            items = [(args[0] if args else Any, v) for v in value]
        return [p for i, (a, v) in enumerate(items) for p in strict_problems(a, v, (*loc, i))]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return [p for k, v in value.items() for p in strict_problems(args[1], v, (*loc, k))]
    if ann is bool and not isinstance(value, bool):
        return [(loc, f"should be true or false (got {_shown(value)})")]
    if ann is int and not (isinstance(value, int) and not isinstance(value, bool)):
        return [(loc, f"should be a whole number (got {_shown(value)})")]
    if ann is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return [(loc, f"should be a number (got {_shown(value)})")]
    return []


def _key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def format_validation_error(
    model: type[BaseModel], err: ValidationError | None, source: str, strict: Iterable[tuple[tuple, str]] = ()
) -> str:
    """One line per problem, each naming the dotted key, with a suggestion for unknown keys.

    ``strict``: problems of :func:`strict_problems`, listed first; pydantic's own line for the same key is dropped.
    """
    strict = list(strict)
    lines = [f"invalid config ({source}):", *(f"  {_key(loc)}: {msg}" for loc, msg in strict)]
    done = {_key(loc) for loc, _ in strict}
    for e in err.errors() if err is not None else []:
        loc = tuple(e["loc"])
        key = _key(loc)
        if key in done:
            continue
        if e["type"] == "extra_forbidden":
            names = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
            valid = f"; valid keys here: {', '.join(names)}" if names else ""
            lines.append(f"  unknown key '{key}'{hint}{valid}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {_shown(e.get('input'))})")
    return "\n".join(lines)


def build_config(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Validate a mapping into ``cls``, turning pydantic's errors into a :class:`ConfigError`.

    Values are type-checked strictly first (:func:`strict_problems`), then by pydantic (ranges, finiteness).
    """
    data = dict(data)
    strict = strict_problems(cls, data)
    try:
        cfg = cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(cls, err, source, strict)) from None
    if strict:
        raise ConfigError(format_validation_error(cls, None, source, strict))
    return cfg


def model_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """The model's default values as plain data ({} if some field has no default)."""
    try:
        return cls().model_dump(mode="python")
    except ValidationError:
        return {}


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file plus ``key.path=value`` overrides."""
    overrides = list(overrides)
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides, model_defaults(cls))
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " + --set " + " ".join(overrides)
    return build_config(cls, data, source)


def save_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config (every default spelled out) as YAML, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
