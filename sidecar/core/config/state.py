"""``state:`` in rules.yaml: where shared state (budget counts) lives.

    state: {redis: redis://redis.internal:6379/0, when_down: local}

Without ``state:`` (or without ``redis:``) the counts live in the sidecar's process and a small
SQLite file in the confdir: nothing to run, but each replica counts on its own. With ``redis:``
every replica draws on the same counts. ``when_down`` says what happens while Redis cannot be
reached: ``local`` (the default) counts in the process meanwhile (a loud metric and log line;
replicas may then overspend together until Redis is back), ``refuse`` answers budgeted calls
503 until it is back. The URL may name a password: it is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from sidecar.core.config.yamlfile import FieldError, mapping_of

WhenDown = Literal["local", "refuse"]
WHEN_DOWN: tuple[WhenDown, ...] = get_args(WhenDown)
_KEYS = {"redis", "when_down"}


@dataclass(frozen=True, slots=True)
class StateSpec:
    redis: str | None = None  # a redis:// (or rediss://, unix://) URL
    when_down: WhenDown = "local"


def parse_state(raw: Any) -> StateSpec:
    if raw is None:
        return StateSpec()
    raw = mapping_of(raw, "state", _KEYS, "{redis: redis://host:6379/0}")
    url = raw.get("redis")
    if url is not None and (not isinstance(url, str)
                            or urlsplit(url).scheme not in ("redis", "rediss", "unix")):
        raise FieldError("state.redis", "must be a redis://, rediss:// or unix:// URL")
    when_down = raw.get("when_down", "local")
    if when_down not in WHEN_DOWN:
        raise FieldError("state.when_down", f"{when_down!r} is not one of: "
                                            f"{', '.join(WHEN_DOWN)}")
    return StateSpec(redis=url, when_down=when_down)
