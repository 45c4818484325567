"""Reading scenario YAML with line numbers, so every error says file:line: field.

PyYAML's composed nodes carry start marks; the loader below keeps each mapping key's line
next to the plain Python value, and `Spec` wraps a mapping with typed, located accessors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from aps.workload.workload import WorkloadError


class _Map(dict):
    """A dict that remembers the line of itself and of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict


class _Seq(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out, out.key_lines, out.line = _Map(), {}, node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise WorkloadError.at("", key_node.start_mark.line + 1, str(key), "duplicate key")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(item, deep=True) for item in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [i.start_mark.line + 1 for i in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, source: str) -> Spec:
    """The document's top-level mapping as a Spec; syntax errors name their line."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except WorkloadError as exc:  # a duplicate key, raised before the file name was known
        raise WorkloadError(f"{source}{exc}", exc.field, exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise WorkloadError.at(source, line, None, f"invalid YAML: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, _Map):
        raise WorkloadError.at(source, 1, None, "expected a mapping at the top level")
    return Spec(data, source, "")


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "number": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "map": ((dict,), "a mapping"),
    "list": ((list,), "a list"),
}


@dataclass(slots=True)
class Spec:
    """A YAML mapping with where it came from: `path` is its dotted field path."""

    data: _Map
    source: str
    path: str
    key_line: int = 0  # line of the key holding this mapping, where errors about it point


    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def line(self, key: str | None = None) -> int:
        if key in self.data.key_lines:
            return self.data.key_lines[key]
        return self.key_line or self.data.line

    def error(self, key: str | None, problem: str) -> WorkloadError:
        return WorkloadError.at(self.source, self.line(key), self.field(key) if key else
                                (self.path or None), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: str, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise self.error(None, f"missing field '{key}'")
            return default
        value = self.data[key]
        types, words = _TYPES[kind]
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, types):
            raise self.error(key, f"expected {words}, got {value!r}")
        return value

    def sub(self, key: str, required: bool = False) -> Spec | None:
        value = self.get(key, "map", required=required)
        return None if value is None else Spec(value, self.source, self.field(key),
                                               self.line(key))

    def items(self, key: str) -> list[Spec]:
        """The mappings of a list field, each with its own path `key[i]`."""
        seq = self.get(key, "list", default=[])
        out = []
        for i, item in enumerate(seq):
            if not isinstance(item, _Map):
                line = seq.item_lines[i] if isinstance(seq, _Seq) else self.line(key)
                raise WorkloadError.at(self.source, line, f"{self.field(key)}[{i}]",
                                       f"expected a mapping, got {item!r}")
            out.append(Spec(item, self.source, f"{self.field(key)}[{i}]"))
        return out

    def allow(self, keys: set[str] | list[str]) -> None:
        for key in self.data:
            if key not in keys:
                raise self.error(key, f"unknown field (allowed: {', '.join(sorted(keys))})")

    def plain(self) -> dict[str, Any]:
        """The mapping as ordinary Python values (for hints handed on unchanged)."""
        return _plain(self.data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
