"""``model-router check``'s warnings: rules that parse, but probably do not do what was meant."""

from __future__ import annotations

from sidecar.core.config.rules import InterceptSpec, RuleSet


def setup_warnings(rules: RuleSet) -> list[str]:
    """One sentence per suspicious setting, in file order."""
    return ([w for spec in rules.intercept if (w := _direct_beside_a_provider(rules, spec))]
            + _undiscoverable(rules))


def _undiscoverable(rules: RuleSet) -> list[str]:
    """``discover: true`` cannot ask a provider that has no credentials of the sidecar's own."""
    if not rules.catalog_spec.discover:
        return []
    return [f"catalog.discover: provider {p.name!r} gets the app's key (api_key: {p.api_key}); "
            f"the sidecar has no key of its own to ask it which models exist, so its models "
            f"are never removed by discovery" for p in rules.providers.values()
            if p.api_key in ("from-request", "none") and p.base_url is not None
            and not p.name.endswith("(direct)")]


def _is_direct(spec: InterceptSpec) -> bool:
    """Whether passthrough for ``spec`` goes to the host itself: no ``provider:`` given and no
    provider's base_url on that host, so the rules named it ``<host> (direct)``."""
    return spec.provider.lower() == f"{spec.host} (direct)"


def _direct_beside_a_provider(rules: RuleSet, spec: InterceptSpec) -> str | None:
    """An intercepted host served directly although a configured provider of the same type
    exists: the user probably meant ``intercept: [{host: ..., provider: ...}]``."""
    if not _is_direct(spec):
        return None
    direct = rules.providers[spec.provider]
    implicit = {s.provider for s in rules.intercept if _is_direct(s)}
    same = [p.name for p in rules.providers.values()
            if p.name not in implicit and p.type == direct.type]
    if not same:
        return None
    which = (f"provider {same[0]!r} (type {direct.type}) is" if len(same) == 1 else
             f"providers {', '.join(map(repr, same))} (type {direct.type}) are")
    name = same[0] if len(same) == 1 else "NAME"
    host = spec.host if spec.port == 443 else spec.address
    return (f"{spec.address} is served directly (passthrough -> {spec.provider}, "
            f"{direct.base_url}, with the app's own key) although {which} configured: "
            f"passthrough calls to this host never go to {'it' if len(same) == 1 else 'them'}. "
            f"If they should, write `intercept: [{{host: {host}, provider: {name}}}]`"
            + ("" if len(same) == 1 else f" (NAME one of: {', '.join(same)})") + ".")
