"""The ``match`` of an app in rules.yaml: which calls the app recognises (``MatchSpec``, read by
``parse_match``), compiled when the rules load.

Each ``MatchSpec`` turns its globs into compiled regular expressions (``fnmatch.translate``, the
very expressions ``fnmatch.fnmatchcase`` uses) and its networks into integer
``(version, network, mask)`` checks on the caller's address, parsed once per call (``Probe``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.config.yamlfile import FieldError, key_step, unknown_keys
from sidecar.core.facts import RequestFacts
from sidecar.core.vocabulary import LISTENERS, Listener

Glob = Callable[[str], "re.Match[str] | None"]  # a compiled glob: ``glob(text) is not None``
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def compile_glob(pattern: str) -> Glob:
    """``fnmatch.fnmatchcase(text, pattern)`` as ``compile_glob(pattern)(text) is not None``."""
    return re.compile(fnmatch.translate(pattern)).match


def compile_network(net: Network) -> tuple[int, int, int]:
    """(version, network, mask) as integers: ``addr in net`` is ``version == addr.version and
    int(addr) & mask == network``, exactly as ``ipaddress`` decides it."""
    return net.version, int(net.network_address), int(net.netmask)


@dataclass(frozen=True, slots=True)
class MatchSpec:
    proxy_user: str | None = None
    client: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # see Network
    header: tuple[tuple[str, str], ...] = ()  # (lower-case name, value glob)
    api_key_sha256: str | None = None  # a hex prefix
    listen: Listener | None = None
    user_agent: str | None = None  # glob
    # compiled from the above (__post_init__): one test, the conjunction of one check per key
    _test: Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _compile_match(self))  # frozen: set once, here

    def matches(self, facts: RequestFacts, probe: Probe | None = None) -> bool:
        """Whether every key given holds. ``probe`` carries what is derived from the call once
        (its parsed address, its key's hash) across all the apps tried."""
        return self._test(facts, probe or Probe(facts))

    def reads(self) -> set[str]:
        """The call fields this match reads (``AppMatcher`` keys its cache on them)."""
        used = {name for name, value in (
            ("proxy_user", self.proxy_user), ("listener", self.listen),
            ("client_ip", self.client), ("api_key_sha256", self.api_key_sha256),
            ("user_agent", self.user_agent)) if value}
        return used | {f"header:{name}" for name, _ in self.header}


Test = Callable[[RequestFacts, "Probe"], bool]


def _compile_match(spec: MatchSpec) -> Test:
    """A function checking exactly the keys ``spec`` gives: globs as compiled regular
    expressions, networks as integer (version, network, mask) checks on the probed address."""
    checks: list[Test] = []
    if spec.proxy_user is not None:
        user = spec.proxy_user
        checks.append(lambda facts, probe: facts.proxy_user == user)
    if spec.listen is not None:
        listen = spec.listen
        checks.append(lambda facts, probe: facts.listener == listen)
    if spec.client:
        networks = tuple(compile_network(n) for n in spec.client)
        checks.append(lambda facts, probe: probe.in_networks(networks))
    if spec.api_key_sha256 is not None:
        prefix = spec.api_key_sha256
        checks.append(lambda facts, probe: probe.key_hash().startswith(prefix))
    if spec.user_agent is not None:
        agent = compile_glob(spec.user_agent)
        checks.append(lambda facts, probe: agent(facts.user_agent) is not None)
    for name, pattern in spec.header:
        checks.append(_header_check(name, compile_glob(pattern)))
    return _conjunction(checks)


def _header_check(name: str, glob: Glob) -> Test:
    def check(facts: RequestFacts, probe: Probe) -> bool:
        value = facts.headers.get(name)
        return value is not None and glob(value) is not None
    return check


def _conjunction(checks: list[Test]) -> Test:
    """All of ``checks``, in order, stopping at the first that fails."""
    if not checks:
        return lambda facts, probe: True  # a match without keys holds for every call
    first = checks[0]
    if len(checks) == 1:
        return first
    rest = _conjunction(checks[1:])
    return lambda facts, probe: first(facts, probe) and rest(facts, probe)


class Probe:
    """Per-call values the match keys need, computed at most once per call."""

    __slots__ = ("_addr", "_facts", "_key")

    def __init__(self, facts: RequestFacts, key_hash: str | None = None) -> None:
        self._facts = facts
        self._addr: tuple[int, int] | None | bool = False  # (version, address as an int)
        self._key = key_hash  # when the caller has computed it already

    def key_hash(self) -> str:
        if self._key is None:
            self._key = self._facts.api_key_sha256 or ""
        return self._key

    def in_networks(self, networks: tuple[tuple[int, int, int], ...]) -> bool:
        """Whether the client address is in any of ``networks`` (``compile_network``)."""
        if self._addr is False:
            self._addr = _parse_address(self._facts.client_ip)
        if self._addr is None or isinstance(self._addr, bool):
            return False
        version, ip = self._addr
        for net_version, net, mask in networks:
            if net_version == version and ip & mask == net:
                return True
        return False


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, no leading zeros
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _parse_address(ip: str) -> tuple[int, int] | None:
    """(version, address as an int) as ``_address`` reads ``ip``; None if it is no address.
    Dotted IPv4 -- what ipaddress accepts as IPv4, exactly -- is read without its objects."""
    if _IPV4.fullmatch(ip):
        a, b, c, d = ip.split(".")
        return 4, int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
    addr = _address(ip)
    return None if addr is None else (addr.version, int(addr))


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


_MATCH_KEYS = {"proxy_user", "client", "header", "api_key_sha256", "listen", "user_agent"}
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


def parse_match(raw: Any) -> MatchSpec:
    if not isinstance(raw, Mapping) or not raw:
        raise FieldError("match", f"must be a mapping with any of: {', '.join(sorted(_MATCH_KEYS))}")
    unknown = unknown_keys(raw, _MATCH_KEYS)
    if unknown:
        raise FieldError(f"match{key_step(unknown[0])}",
                         f"unknown match key; allowed: {', '.join(sorted(_MATCH_KEYS))}")
    return MatchSpec(
        proxy_user=_opt_str(raw, "proxy_user"),
        client=_networks(raw.get("client")),
        header=_headers(raw.get("header")),
        api_key_sha256=_key_hash(raw.get("api_key_sha256")),
        listen=_listen(raw.get("listen")),
        user_agent=_opt_str(raw, "user_agent"),
    )


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise FieldError(f"match.{key}", "must be a non-empty string")
    return value


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    try:
        return tuple(ipaddress.ip_network(str(v), strict=False) for v in items)
    except ValueError as e:
        raise FieldError("match.client", f"not a CIDR or address: {e}") from None


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        raise FieldError("match.header", "must be a mapping of header name -> value (glob)")
    for name, glob in value.items():
        if glob is None or isinstance(glob, Mapping | list):
            raise FieldError("match.header", f"header {str(name)!r} needs a value (a glob; "
                             "'*' for any value)")
    return tuple((str(k).lower(), str(v)) for k, v in value.items())


def _key_hash(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if not _HEX.match(text):
        raise FieldError("match.api_key_sha256", "must be a hex prefix (at least 4 characters) "
                         "of the SHA-256 of the key — never the key itself")
    return text


def _listen(value: Any) -> Listener | None:
    if value is None:
        return None
    for listener in LISTENERS:
        if value == listener:
            return listener
    raise FieldError("match.listen", f"{value!r} is not one of: {', '.join(LISTENERS)}")
