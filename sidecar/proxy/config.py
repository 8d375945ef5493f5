"""The rules the sidecar serves with, kept current: loaded, swapped at once, reloaded on change.

``Loaded`` is everything one rules file needs to serve (its ``RuleSet`` and an adapter per
provider); it is built off the event loop (AWS credentials may block) and swapped in whole, so
calls in flight keep what they started with. A broken file keeps the previous rules. Providers
that cannot serve (a key variable unset, no AWS credentials) are down until their adapter says
otherwise; credentials are re-checked off the loop before they expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.core.config.catalog import Catalog
from sidecar.core.config.rules import RuleSet, load_rules
from sidecar.core.errors import SidecarError
from sidecar.forward.call import Dispatcher
from sidecar.providers.registry import make_adapters

log = logging.getLogger("sidecar")

CREDENTIALS_CHECK_SECONDS = 30.0
RULES_POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Loaded:
    rules: RuleSet
    dispatcher: Dispatcher
    down: Mapping[str, str]  # provider -> why it cannot serve, at load time


def load(rules: RuleSet, environ: Mapping[str, str]) -> Loaded:
    """Everything a rules file needs before it can serve. Blocking (AWS credentials)."""
    adapters = make_adapters(rules.providers, environ)
    down = {name: why for name, adapter in adapters.items()
            if (why := adapter.unavailable()) is not None}
    return Loaded(rules, Dispatcher(adapters), down)


class LiveConfig:
    def __init__(self, *, environ: Mapping[str, str],
                 on_swap: Callable[[RuleSet | None, RuleSet], None],
                 credentials_check: float = CREDENTIALS_CHECK_SECONDS) -> None:
        self.environ = environ
        self.credentials_check = credentials_check  # seconds between checks of credentials
        self.on_swap = on_swap  # (old rules, new rules), after every swap
        self.loaded: Loaded | None = None
        self.base: Catalog | None = None  # the refreshed catalog under rules.yaml (None: built-in)
        self.providers_down: dict[str, str] = {}
        self.stamp: tuple[int, int, int] | None = None

    def use(self, rules: RuleSet) -> None:
        """Switch to ``rules``. Blocking: resolves AWS credentials for Bedrock providers."""
        self._swap(load(rules, self.environ))

    def _swap(self, loaded: Loaded) -> None:
        old = self.loaded.rules if self.loaded is not None else None
        self.loaded, self.providers_down = loaded, dict(loaded.down)
        self.stamp = file_stamp(loaded.rules.path)
        for name, reason in loaded.down.items():
            log.warning("provider %s is unavailable: %s", name, reason)
        self.on_swap(old, loaded.rules)

    async def reload(self, why: str) -> bool:
        """Re-read the rules file off the event loop; a broken file keeps the old rules."""
        if self.loaded is None:
            return False
        path = self.loaded.rules.path
        try:
            loaded = await asyncio.to_thread(
                lambda: load(load_rules(path, catalog=self.base), self.environ))
        except SidecarError as e:
            self.stamp = file_stamp(path)  # do not retry the same broken file every second
            log.error("rules reload (%s) failed; keeping the previous rules: %s", why, e)
            return False
        self._swap(loaded)
        log.info("rules reloaded from %s (%s)", path, why)
        return True

    async def rebase(self, base: Catalog, why: str) -> bool:
        """Serve the rules file over a new base catalog (a refresh); it stays for later reloads.
        A rules file that fails to load over it keeps everything as it was."""
        previous, self.base = self.base, base
        if await self.reload(why):
            return True
        self.base = previous
        return False

    async def watch(self) -> None:
        """Reload when the file changes (mtime, size or inode: editors and ConfigMaps swap it)."""
        while True:
            await asyncio.sleep(RULES_POLL_SECONDS)
            if self.loaded is not None and file_stamp(self.loaded.rules.path) != self.stamp:
                await self.reload("file changed")

    async def refresh(self) -> None:
        """Refresh expiring credentials off the event loop, and bring providers up (or down)
        as they appear (or vanish); preparing a call then never blocks."""
        while True:
            await asyncio.sleep(self.credentials_check)
            adapters = self.loaded.dispatcher.adapters if self.loaded else {}
            for name, adapter in list(adapters.items()):
                if adapter.needs_refresh():
                    self.set_down(name, await asyncio.to_thread(adapter.unavailable))

    def set_down(self, name: str, reason: str | None) -> None:
        down = dict(self.providers_down)
        if reason is None:
            if down.pop(name, None) is not None:
                log.info("provider %s is available again", name)
        elif down.get(name) != reason:
            down[name] = reason
            log.warning("provider %s is unavailable: %s", name, reason)
        self.providers_down = down


def file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def intercept_patterns(rules: RuleSet) -> list[str]:
    """mitmproxy ``allow_hosts``: only these destinations are decrypted; others are tunnelled."""
    return [f"^{re.escape(spec.host)}:{spec.port}$" for spec in rules.intercept]
