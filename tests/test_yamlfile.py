"""sidecar/yamlfile.py: YAML that remembers lines, ``locate`` of dotted key paths, duplicates."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from sidecar.core.config.yamlfile import FieldError, LineDict, LineList, key_step, load_yaml, locate

DOC = textwrap.dedent("""\
    version: 1
    apps:
      - name: a
        routes:
          gpt-4o: cheap
          "gpt-4.1":
            prefer: quality
      - name: b
        match:
          client:
            - 10.0.0.0/8
            - 192.168.0.0/16
    defaults: {tier: standard, prefer: balanced}
""")


@pytest.fixture(scope="module")
def doc() -> LineDict:
    return load_yaml(DOC)


def test_load_yaml_returns_plain_containers_with_lines(doc: LineDict) -> None:
    assert doc == yaml.safe_load(DOC)  # same data as a plain load
    assert isinstance(doc, dict) and isinstance(doc, LineDict)
    assert isinstance(doc["apps"], list) and isinstance(doc["apps"], LineList)
    assert doc.line == 1
    assert doc.key_lines == {"version": 1, "apps": 2, "defaults": 13}
    assert doc["apps"].item_lines == [3, 8]
    assert doc["apps"][1]["match"]["client"].item_lines == [11, 12]
    assert doc["defaults"].key_lines == {"tier": 13, "prefer": 13}  # flow style: same line


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_document_is_none(text: str) -> None:
    assert load_yaml(text) is None


@pytest.mark.parametrize("path, line", [
    ("", 1),
    ("version", 1),
    ("apps", 2),
    ("apps[0]", 3),
    ("apps[0].name", 3),
    ("apps[0].routes", 4),
    ("apps[0].routes.gpt-4o", 5),
    ('apps[0].routes["gpt-4.1"]', 6),
    ('apps[0].routes["gpt-4.1"].prefer', 7),
    ("apps[1]", 8),
    ("apps[1].match.client", 10),
    ("apps[1].match.client[0]", 11),
    ("apps[1].match.client[1]", 12),
    ("defaults.prefer", 13),
    # the deepest node that exists
    ("apps[0].routes.gpt-4o.prefer", 5),
    ("apps[7].routes", 2),
    ("apps[1].match.client[9]", 10),
    ("apps[0].nope.deeper", 3),
    ("nope", 1),
    # a dotted key written without quotes is two steps, the first of which does not exist
    ("apps[0].routes.gpt-4.1.prefer", 4),
])
def test_locate(doc: LineDict, path: str, line: int) -> None:
    assert locate(doc, path) == line


def test_locate_on_a_non_yaml_root_is_none() -> None:
    assert locate({"a": 1}, "a") is None
    assert locate(None, "a") is None


@pytest.mark.parametrize("key, step", [
    ("gpt-4o", ".gpt-4o"),
    ("*", ".*"),
    ("gpt-4o*", ".gpt-4o*"),
    ("gpt-4.1", '["gpt-4.1"]'),
    ("claude-3.5-*", '["claude-3.5-*"]'),
])
def test_key_step(key: str, step: str) -> None:
    assert key_step(key) == step


def test_key_step_paths_locate_back_to_their_line(doc: LineDict) -> None:
    for key, line in (("gpt-4o", 5), ("gpt-4.1", 6)):
        assert locate(doc, "apps[0].routes" + key_step(key)) == line


def test_locate_a_route_glob_with_a_character_class() -> None:
    root = load_yaml('routes:\n  "gpt-[45]*": passthrough\n')
    assert locate(root, "routes" + key_step("gpt-[45]*")) == 2


@pytest.mark.parametrize("text, path, line", [
    ("a:\n  2: x\n  true: y\n", "a.2", 2),
    ("a:\n  2: x\n  true: y\n", "a.True", 3),
    ("a:\n  - x\n  - y\n", "a[1]", 3),
    ('a:\n  "x]y": 1\n', 'a["x]y"]', 2),
    ("a:\n  b: 1\n", "a[oops", 1),
])
def test_locate_never_crashes_and_finds_non_string_keys(text: str, path: str, line: int) -> None:
    assert locate(load_yaml(text), path) == line


def test_a_list_as_a_key_is_a_yaml_error() -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        load_yaml("? [a, b]\n: x\n")
    assert info.value.problem == "found a list or mapping as a key"


@pytest.mark.parametrize("text, line, key", [
    ("a: 1\nb: 2\na: 3\n", 3, "a"),
    ("apps:\n  - name: x\n    routes:\n      gpt-4o: cheap\n      gpt-4o: fast\n", 5, "gpt-4o"),
    ("defaults: {tier: standard, tier: premium}\n", 1, "tier"),
])
def test_duplicate_keys_are_rejected_at_the_duplicate(text: str, line: int, key: str) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        load_yaml(text)
    assert info.value.problem == f"duplicate key {key!r}"
    assert info.value.problem_mark is not None
    assert info.value.problem_mark.line + 1 == line


def test_the_same_key_in_different_mappings_is_fine() -> None:
    assert load_yaml("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


def test_load_yaml_is_safe() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize("key, prefix, expected", [
    ("prefer", "routes.gpt-4o", "routes.gpt-4o.prefer"),
    ("", "apps[2]", "apps[2]"),
    ("match.client", "apps[0]", "apps[0].match.client"),
])
def test_field_error_under(key: str, prefix: str, expected: str) -> None:
    err = FieldError(key, "bad value").under(prefix)
    assert (err.key, err.message, str(err)) == (expected, "bad value", f"{expected}: bad value")


def test_field_error_without_key_is_just_the_message() -> None:
    err = FieldError("", "must be a mapping")
    assert str(err) == "must be a mapping"
    assert isinstance(err, ValueError)
