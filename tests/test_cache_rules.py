"""The exact response cache's rules (``sidecar.core.cache``): the ``cache:`` keys of rules.yaml,
which calls may be cached, and keys that keep tenants, providers, models and bodies apart."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.cache import (
    CacheSpec,
    CacheStoreSpec,
    cache_key,
    parse_cache,
    parse_cache_store,
    uncacheable,
)
from sidecar.core.config.yamlfile import FieldError, load_yaml
from sidecar.core.facts import key_sha256

MiB = 1 << 20


# -- parse_cache -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("{ttl: 1h}", CacheSpec(ttl=3600.0)),
    ("{ttl: 30m, any: true, max_entry_bytes: 2MB}", CacheSpec(1800.0, True, 2 * MiB)),
    ("{ttl: 90}", CacheSpec(ttl=90.0)),
    ("{ttl: 45s, max_entry_bytes: 512KB}", CacheSpec(ttl=45.0, max_entry_bytes=512 * 1024)),
    ("{ttl: 1d, max_entry_bytes: 4096}", CacheSpec(ttl=86400.0, max_entry_bytes=4096)),
    ("{ttl: 1.5h, any: false, max_entry_bytes: 1 MiB}", CacheSpec(ttl=5400.0)),
    ("{ttl: 2h, max_entry_bytes: 1.5kb}", CacheSpec(ttl=7200.0, max_entry_bytes=1536)),
])
def test_parse_cache_reads_durations_and_sizes(text: str, expected: CacheSpec) -> None:
    assert parse_cache(load_yaml(text), "cache") == expected


def test_no_cache_key_is_no_cache() -> None:
    assert parse_cache(None, "cache") is None


@pytest.mark.parametrize(("text", "key", "says"), [
    ("[1h]", "cache", "must be a mapping"),
    ("1h", "cache", "must be a mapping"),
    ("{}", "cache.ttl", "required"),
    ("{any: true}", "cache.ttl", "required"),
    ("{ttl: soon}", "cache.ttl", "not a duration"),
    ("{ttl: 1w}", "cache.ttl", "not a duration"),
    ("{ttl: -5m}", "cache.ttl", "not a duration"),
    ("{ttl: true}", "cache.ttl", "not a duration"),
    ("{ttl: 0}", "cache.ttl", "from 1s to 30d"),
    ("{ttl: 31d}", "cache.ttl", "from 1s to 30d"),
    ("{ttl: 1h, any: yes please}", "cache.any", "true or false"),
    ("{ttl: 1h, any: 1}", "cache.any", "true or false"),
    ("{ttl: 1h, max_entry_bytes: big}", "cache.max_entry_bytes", "not a size"),
    ("{ttl: 1h, max_entry_bytes: 2TB}", "cache.max_entry_bytes", "not a size"),
    ("{ttl: 1h, max_entry_bytes: 0}", "cache.max_entry_bytes", "above 0"),
    ("{ttl: 1h, max_entry_bytes: false}", "cache.max_entry_bytes", "not a size"),
    ("{ttl: 1h, size: 2MB}", "cache.size", "unknown key; allowed: any, max_entry_bytes, ttl"),
])
def test_parse_cache_errors_name_the_key(text: str, key: str, says: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_cache(load_yaml(text), "cache")
    assert caught.value.key == key
    assert says in caught.value.message


def test_an_app_error_is_placed_under_the_app() -> None:
    with pytest.raises(FieldError) as caught:
        parse_cache({"ttl": "1h", "any": "no"}, "cache")
    assert caught.value.under("apps[2]").key == "apps[2].cache.any"


def test_parse_cache_store() -> None:
    assert parse_cache_store(None) == CacheStoreSpec(max_bytes=64 * MiB)
    assert parse_cache_store(load_yaml("{}")) == CacheStoreSpec()
    assert parse_cache_store(load_yaml("{max_bytes: 64MB}")) == CacheStoreSpec(64 * MiB)
    assert parse_cache_store(load_yaml("{max_bytes: 1GB}")) == CacheStoreSpec(1 << 30)
    assert parse_cache_store({"max_bytes": 1000}) == CacheStoreSpec(1000)
    for raw, key in ((load_yaml("{max_bytes: lots}"), "cache.max_bytes"),
                     (load_yaml("{ttl: 1h}"), "cache.ttl"), ("64MB", "cache")):
        with pytest.raises(FieldError) as caught:
            parse_cache_store(raw)
        assert caught.value.key == key


# -- uncacheable ------------------------------------------------------------------------------

STRICT = CacheSpec(ttl=60)
ANY = CacheSpec(ttl=60, any=True)
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(("extra", "strict", "anything"), [
    ({"temperature": 0}, None, None),
    ({"temperature": 0.0}, None, None),
    ({"temperature": 0, "n": 1}, None, None),
    ({"temperature": 0, "stream": True, "stream_options": {"include_usage": True}}, None, None),
    ({"temperature": 0, "user": "u1", "metadata": {"k": "v"}}, None, None),
    ({"temperature": 0, "logprobs": False}, None, None),
    ({"temperature": 0, "top_logprobs": 0}, None, None),
    ({"temperature": 0, "seed": 7, "top_p": 0.5}, None, None),
    ({}, "temperature not 0", None),
    ({"temperature": None}, "temperature not 0", None),
    ({"temperature": 0.2}, "temperature not 0", None),
    ({"temperature": 1}, "temperature not 0", None),
    ({"seed": 42}, "temperature not 0", None),
    ({"temperature": False}, "temperature not 0", None),
    ({"temperature": "0"}, "temperature not 0", None),
    ({"temperature": 0, "n": 2}, "n>1", "n>1"),
    ({"n": 3}, "n>1", "n>1"),
    ({"temperature": 0, "logprobs": True}, "logprobs", "logprobs"),
    ({"temperature": 0, "logprobs": True, "top_logprobs": 3}, "logprobs", "logprobs"),
    ({"temperature": 0, "top_logprobs": 2}, "logprobs", "logprobs"),
    ({"temperature": 0, "include": ["message.output_text.logprobs"]}, "logprobs", "logprobs"),
    ({"temperature": 0, "include": ["reasoning.encrypted_content"]}, None, None),
    ({"temperature": 0, "background": True}, "background", "background"),
    ({"temperature": 0, "conversation": "conv_1"}, "conversation", "conversation"),
])
def test_uncacheable(extra: dict[str, Any], strict: str | None, anything: str | None) -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES, **extra}
    assert uncacheable(body, STRICT) == strict
    assert uncacheable(body, ANY) == anything


# -- cache_key --------------------------------------------------------------------------------

KEY_HASH = key_sha256("Bearer sk-app-one")
OTHER_HASH = key_sha256("Bearer sk-app-two")
BASE: dict[str, Any] = {"app": "summaries", "key_hash": KEY_HASH, "provider": "openai",
                        "upstream_model": "gpt-4o-2024-08-06", "api": "chat"}
BODY: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0}


def key(body: dict[str, Any] = BODY, **changes: Any) -> str:
    return cache_key(**{**BASE, **changes}, body=body)


def test_the_key_is_a_sha256_and_stable() -> None:
    assert KEY_HASH is not None and OTHER_HASH is not None and KEY_HASH != OTHER_HASH
    first = key()
    assert len(first) == 64 and int(first, 16) >= 0
    assert key() == first
    assert key({"temperature": 0, "messages": MESSAGES, "model": "gpt-4o"}) == first  # key order


@pytest.mark.parametrize("change", [
    {"app": "other-app"}, {"key_hash": OTHER_HASH}, {"key_hash": ""}, {"provider": "bedrock"},
    {"upstream_model": "gpt-4o-mini"}, {"api": "responses"},
])
def test_each_part_of_the_call_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


@pytest.mark.parametrize("body_change", [
    {"messages": [{"role": "user", "content": "Hi!"}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"temperature": 0.0},
    {"user": "user-1"},
    {"metadata": {"job": "7"}},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"max_tokens": 10},
    {"seed": 1},
    {"response_format": {"type": "json_object"}},
])
def test_every_other_body_field_changes_the_key(body_change: dict[str, Any]) -> None:
    assert key({**BODY, **body_change}) != key()


@pytest.mark.parametrize("body_change", [
    {"model": "gpt-4o-mini"},
    {"model": "auto"},
    {"stream": True},
    {"stream": False},
    {"stream": True, "stream_options": {"include_usage": True}},
    {"prefer": "cheap"},
    {"tier": "economy"},
])
def test_routing_and_streaming_fields_do_not_change_the_key(body_change: dict[str, Any]) -> None:
    assert key({**BODY, **body_change}) == key()


def test_the_key_does_not_mix_parts_up() -> None:
    """Parts are list items of a JSON document: moving text from one to the next changes it."""
    assert key(app="a:b", provider="c") != key(app="a", provider="b:c")
    assert key({**BODY, "user": "ü 🌍"}) != key({**BODY, "user": "u"})


def test_a_lone_surrogate_in_the_body_still_has_a_key() -> None:
    assert len(key({**BODY, "user": "\ud800"})) == 64
