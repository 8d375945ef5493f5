"""YAML that remembers where each key came from, so a bad entry is reported as file:line: key.

``load_yaml(text)`` returns plain ``dict``/``list`` subclasses (``LineDict``/``LineList``) that carry
the 1-based line of every key and item. Parsers raise ``FieldError(key, message)`` with a dotted
key path relative to the mapping they were given; ``locate(root, path)`` turns that path back
into a line number.
"""

from __future__ import annotations

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
        key = f"{prefix}.{self.key}" if self.key else prefix
        return FieldError(key, self.message)


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


def locate(root: Any, path: str) -> int | None:
    """The line of the deepest node along ``path`` (``apps[1].routes.gpt-4o``) that exists."""
    line = getattr(root, "line", None) or None
    node = root
    for step in _split(path):
        if isinstance(step, int) and isinstance(node, LineList) and step < len(node):
            line, node = node.item_lines[step], node[step]
        elif isinstance(node, LineDict) and step in node:
            line, node = node.key_lines[step], node[step]
        elif isinstance(node, LineDict) and str(step) in node:
            line, node = node.key_lines[str(step)], node[str(step)]
        else:
            break
    return line


def _split(path: str) -> list[str | int]:
    """``apps[1].routes.gpt-4o`` -> ``["apps", 1, "routes", "gpt-4o"]``.

    Keys may contain dots (model names such as ``gpt-4.1``); a segment is joined back onto the
    previous one by ``locate``'s caller convention of quoting such keys as ``routes["gpt-4.1"]``.
    """
    steps: list[str | int] = []
    i, n = 0, len(path)
    buf = ""
    while i < n:
        ch = path[i]
        if ch == ".":
            if buf:
                steps.append(buf)
            buf = ""
        elif ch == "[":
            if buf:
                steps.append(buf)
            buf = ""
            end = path.index("]", i)
            inner = path[i + 1 : end]
            if inner.startswith('"') and inner.endswith('"'):
                steps.append(inner[1:-1])
            else:
                steps.append(int(inner))
            i = end
        else:
            buf += ch
        i += 1
    if buf:
        steps.append(buf)
    return steps


def key_step(key: object) -> str:
    """A path segment for ``key``: plain when safe, ``["..."]`` when it contains dots or brackets."""
    text = str(key)
    if any(c in text for c in '.[]"'):
        return f'["{text}"]'
    return f".{text}"
