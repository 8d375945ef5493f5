"""The explicit proxy's own credentials: which app a connection is (``proxy_user``) and, when
required (``--proxy-auth FILE``), whether it may use the sidecar at all."""

from __future__ import annotations

import base64
import hmac
import weakref
from collections.abc import Mapping

from mitmproxy import connection


def load_proxy_auth(path: str) -> dict[str, str]:
    """``user:password`` lines (blank lines and # comments ignored); "" means no auth."""
    if not path:
        return {}
    users = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, password = line.partition(":")
            if not sep or not user or not password:
                raise ValueError(f"{path}:{number}: expected 'user:password'")
            users[user] = password
    if not users:
        raise ValueError(f"{path}: no users")
    return users


def proxy_authenticated(header: str, users: Mapping[str, str]) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = users.get(user)
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


def proxy_user(header: str) -> str | None:
    """The user name of a ``Proxy-Authorization: Basic`` header (the app's name), if any."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return user or None


class ProxyUsers:
    """Who each explicit-proxy connection is (the user of its CONNECT), and whether it may use
    the proxy at all (``required``: user -> password, when proxy auth is on)."""

    def __init__(self) -> None:
        self.required: dict[str, str] = {}
        self._users: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary())

    def connect(self, client: connection.Client, header: str) -> bool:
        """A CONNECT with this Proxy-Authorization header; False: answer 407."""
        if self.required and not proxy_authenticated(header, self.required):
            return False
        user = proxy_user(header)
        if user:
            self._users[client] = user
        return True

    def allows(self, client: connection.Client, header: str) -> bool:
        """A plain-HTTP request to the explicit proxy (no CONNECT before it)."""
        return not self.required or client in self._users or proxy_authenticated(
            header, self.required)

    def user(self, client: connection.Client, header: str) -> str | None:
        return self._users.get(client) or proxy_user(header)
