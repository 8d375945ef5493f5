"""YAML that remembers where each key came from, so a bad entry is reported as file:line: key.

``load_yaml(text)`` returns plain ``dict``/``list`` subclasses (``LineDict``/``LineList``) that carry
the 1-based line of every key and item. Parsers raise ``FieldError(key, message)`` with a dotted
key path relative to the mapping they were given; ``locate(root, path)`` turns that path back
into a line number.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import yaml


class FieldError(ValueError):
    """A value that cannot be parsed; ``key`` is a dotted path such as ``routes.gpt-4o.prefer``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message

    def under(self, prefix: str) -> FieldError:
        """The same error, with its key path prefixed (``apps[2]`` + ``match.client``)."""
        if not self.key:
            return FieldError(prefix, self.message)
        sep = "" if self.key.startswith("[") else "."
        return FieldError(f"{prefix}{sep}{self.key}", self.message)


class LineDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.MarkedYAMLError(
                "while constructing a mapping", node.start_mark,
                "found a list or mapping as a key", key_node.start_mark,
            )
        if key in out:
            raise yaml.MarkedYAMLError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r}", key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str) -> Any:
    """Parse YAML text; raises ``yaml.YAMLError`` (with a mark) on syntax errors."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def load_config_yaml(text: str, *, path: str) -> Any:
    """Parse a configuration file's YAML; a syntax error is a ConfigError with file and line."""
    from sidecar.core.errors import ConfigError

    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"not valid YAML: {problem}", path=path,
                          line=mark.line + 1 if mark is not None else None) from None


def locate(root: Any, path: str) -> int | None:
    """The line of the deepest node along ``path`` (``apps[1].routes.gpt-4o``) that exists."""
    line = getattr(root, "line", None) or None
    node = root
    for step in _split(path):
        found = _child(node, step)
        if found is None:
            break
        line, node = found
    return line


def _child(node: Any, step: str | int) -> tuple[int, Any] | None:
    """(line, value) of one path step under ``node``; a key may be written as its ``str()``."""
    if isinstance(step, int) and isinstance(node, LineList) and step < len(node):
        return node.item_lines[step], node[step]
    if not isinstance(node, LineDict):
        return None
    for key in (step, str(step)):
        if key in node:
            return node.key_lines[key], node[key]
    for key in node:
        if str(key) == str(step):
            return node.key_lines[key], node[key]
    return None


def _split(path: str) -> list[str | int]:
    """``apps[1].routes.gpt-4o`` -> ``["apps", 1, "routes", "gpt-4o"]``.

    Keys may contain dots and brackets (``gpt-4.1``, ``gpt-[45]*``); ``key_step`` quotes such
    keys as ``routes["gpt-4.1"]``, and a quoted segment runs to its closing ``"]``.
    """
    steps: list[str | int] = []
    i, n = 0, len(path)
    buf = ""
    while i < n:
        ch = path[i]
        if ch in ".[":
            if buf:
                steps.append(buf)
            buf = ""
            if ch == "[":
                step, i = _bracket(path, i)
                steps.append(step)
                continue
        else:
            buf += ch
        i += 1
    if buf:
        steps.append(buf)
    return steps


def _bracket(path: str, start: int) -> tuple[str | int, int]:
    """The segment opening at ``path[start] == "["`` and the index just past its end:
    ``["gpt-[45]*"]`` is a key, ``[2]`` an index (anything else is taken as a key)."""
    if path.startswith('["', start):
        end = path.find('"]', start + 2)
        end = len(path) if end < 0 else end
        return path[start + 2 : end], end + 2
    end = path.find("]", start)
    end = len(path) if end < 0 else end
    inner = path[start + 1 : end]
    return (int(inner) if inner.isascii() and inner.isdigit() else inner), end + 1


def key_step(key: object) -> str:
    """A path segment for ``key``: plain when safe, ``["..."]`` when it contains dots or brackets."""
    text = str(key)
    if any(c in text for c in '.[]"'):
        return f'["{text}"]'
    return f".{text}"


def key_name(key: object) -> str:
    """``key`` as a relative path of its own: ``gpt-4o``, or ``["gpt-4.1"]`` when quoted."""
    return key_step(key).removeprefix(".")


def unknown_keys(raw: Mapping[Any, Any], allowed: Iterable[str]) -> list[Any]:
    """The keys of ``raw`` not in ``allowed``, ordered by their text (keys need not be strings)."""
    known = set(allowed)
    return sorted((k for k in raw if not isinstance(k, str) or k not in known), key=str)


def mapping_of(raw: Any, where: str, allowed: Iterable[str], example: str) -> Mapping[str, Any]:
    """``raw`` when it is a mapping of only ``allowed`` keys; else a ``FieldError`` at ``where``
    (``example`` shows the shape, e.g. ``{ttl: 1h}``) or at the first unknown key."""
    if not isinstance(raw, Mapping):
        raise FieldError(where, f"must be a mapping like {example}")
    unknown = unknown_keys(raw, allowed)
    if unknown:
        raise FieldError(f"{where}{key_step(unknown[0])}",
                         f"unknown key; allowed: {', '.join(sorted(allowed))}")
    return raw


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: Any, where: str, *, minimum: float, maximum: float, limits: str) -> float:
    """``30s``, ``30m``, ``6h``, ``1d`` or a number of seconds, within [minimum, maximum]
    (``limits`` says so in the error, e.g. "from 1s to 30d")."""
    match = None if isinstance(raw, bool) else re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)",
                                                             str(raw).strip())
    if match is None:
        raise FieldError(where, f"{raw!r} is not a duration like 30m, 6h or 1d")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if not minimum <= seconds <= maximum:
        raise FieldError(where, f"must be {limits}")
    return seconds
