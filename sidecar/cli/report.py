"""Readable text for the CLI: the resolved setup, the catalog, a decision, app-side variables."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.core.budget import GLOBAL, BudgetSpec, DegradeStep, to_micros
from sidecar.core.config.apps import DEFAULT_APP, AppSpec
from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.errors import SidecarError
from sidecar.core.facts import facts_from_chat
from sidecar.core.live import View
from sidecar.core.routing.autotier import BASE as BASE_SCORE
from sidecar.core.routing.autotier import WEIGHTS
from sidecar.core.routing.decision import Health, expected_output_tokens
from sidecar.core.routing.latency import LatencyEstimate
from sidecar.core.routing.policy import choose_route
from sidecar.state.redis import redact


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_check(rules: RuleSet, providers_down: Mapping[str, str]) -> str:
    out = [f"{rules.path}: OK", "", "Intercepted hosts (decrypted; all others tunnelled):"]
    out += [f"  {s.address}  passthrough -> {s.provider}" for s in rules.intercept]
    out += ["", "Providers:"]
    for p in rules.providers.values():
        where = p.base_url or f"bedrock {p.region}" + (f" via {p.endpoint_url}" if p.endpoint_url
                                                        else "")
        status = f"UNAVAILABLE: {providers_down[p.name]}" if p.name in providers_down else "ok"
        timeout = f"  timeout: {p.timeout:g} s" if p.timeout is not None else ""
        out.append(f"  {p.name:<16} {p.type:<8} {where}  key: {p.api_key}{timeout}  [{status}]")
    out += ["", f"Defaults: tier={rules.defaults.tier} prefer={rules.defaults.prefer}"
            + ("  (global shadow mode ON)" if rules.shadow else ""), "", "Apps (first match wins):"]
    for app in (*rules.apps, DEFAULT_APP):
        match = "everything" if app.match is None else _describe_match(app.match)
        out.append(f"  {app.name}  match: {match}" + ("  [shadow]" if app.shadow else ""))
        for r in app.routes:
            out.append(f"    {r.pattern!r:<18} -> {_describe_route(r)}")
        if app.budget is not None:
            out.append(f"    budget: {_describe_budget(app.budget)}")
        if app.cache is not None:
            out.append(f"    cache: {app.cache.describe()}")
    if rules.budget is not None:
        out += ["", f"Budget of all apps together: {_describe_budget(rules.budget)}"]
    if rules.state.redis is not None:
        out.append(f"State: Redis {redact(rules.state.redis)} (while unreachable: "
                   f"{rules.state.when_down})")
    usable = sum(1 for m in rules.catalog if m.provider in rules.providers
                 and m.provider not in providers_down)
    out += ["", f"Catalog: {len(rules.catalog)} models, {usable} on available providers"]
    spec = rules.catalog_spec
    if spec.refreshes:
        out.append(f"  refreshed every {spec.refresh:g} s from: " + ", ".join(
            [f"{s.name} ({s.format}{', served by ' + s.provider if s.provider else ''})"
             for s in spec.sources] + (["scores"] if spec.scores else [])
            + (["provider discovery"] if spec.discover else [])))
    return "\n".join(out)


def _describe_budget(budget: BudgetSpec) -> str:
    steps = "; ".join(s.describe() for s in budget.degrade)
    return budget.describe() + (f"; degrade {steps}" if steps else "") + (
        f"; at the limit: {budget.at_limit}")



def _describe_match(match: Any) -> str:
    fields = ("proxy_user", "client", "header", "api_key_sha256", "listen", "user_agent")
    parts = []
    for name in fields:
        value = getattr(match, name)
        if value:
            if name == "client":
                value = ",".join(str(n) for n in value)
            elif name == "header":
                value = ",".join(f"{k}={v}" for k, v in value)
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _describe_route(route: Any) -> str:
    if route.kind == "pin":
        text = f"pin {route.model}"
    elif route.kind == "auto":
        text = f"auto prefer={route.prefer or '(request/default)'} tier={route.tier or '(request/default)'}"
    else:
        text = "passthrough"
    return text + (f" fallbacks={','.join(route.fallbacks)}" if route.fallbacks else "")


def render_models(rules: RuleSet, view: View) -> str:
    rows = []
    snapshot = view.latency.snapshot()
    for m in sorted(rules.catalog, key=lambda m: (("economy", "standard", "premium").index(m.tier),
                                                  m.name)):
        seen = snapshot.get(m.deployment, {})
        rows.append([m.name, m.tier, m.provider, m.input_price, m.output_price, m.context,
                     m.quality, m.coding, m.ttft_prior, _seen(seen.get("ttft_seconds")),
                     _seen(seen.get("seconds_per_token")),
                     ",".join(sorted(m.supports)) or None,
                     _origin(m), view.deployments_down.get(m.deployment) or _availability(
                         m, rules, view.providers_down)])
    return table(["model", "tier", "provider", "$in/M", "$out/M", "context", "quality", "coding",
                  "ttft prior(s)", "ttft seen(s)", "s/token seen", "supports", "prices from",
                  "status"],
                 rows) + (
        f"\n\n({view.source})")


def _budget_step(app: AppSpec, rules: RuleSet, view: View
                 ) -> tuple[list[str], DegradeStep | None]:
    """The budget step of ``explain``: the app's (else the global) budget, what the running
    sidecar last saw used, and the degrade step in force."""
    owners = [(app.name, app.budget), (GLOBAL, rules.budget)]
    lines, step = [], None
    for owner, spec in owners:
        if spec is None:
            continue
        used = view.budgets.get(owner)
        seen = "not seen by a running sidecar" if used is None else f"${used:.6f} used"
        now = spec.step(to_micros(used)) if used is not None else None
        step = step or now
        whose = f"app {owner}" if owner != GLOBAL else "all apps"
        lines.append(f"budget ({whose}): {spec.describe()}, {seen}; " + (
            f"degraded {now.describe()}" if now else "not degraded") + (
            f"; steps: {'; '.join(s.describe() for s in spec.degrade)}" if spec.degrade else ""))
    return lines, step


def _origin(m: ModelSpec) -> str:
    """Where an entry's prices come from, and their date: a refresh's source name
    (``prices: litellm key 'gpt-4o'``) or the shipped snapshot (``built-in``)."""
    source = m.source or ""
    where = (source.split()[1] if source.startswith("prices: ") and " key '" in source
             else "rules.yaml" if source == "" and m.as_of is None else "built-in")
    date = re.search(r"prices (\S+?)(;|$)", m.as_of or "")
    return f"{where} {date.group(1)}" if date else where


def _latency(estimate: LatencyEstimate) -> str:
    return f"{estimate.seconds:.2f}" + ("" if estimate.observed else " (prior)")


def _seen(value: float | int | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _availability(m: ModelSpec, rules: RuleSet, providers_down: Mapping[str, str]) -> str:
    if m.provider not in rules.providers:
        return "provider not configured"
    return f"unavailable: {providers_down[m.provider]}" if m.provider in providers_down else "ok"


def unknown_app(rules: RuleSet, app: str | None) -> str | None:
    """What is wrong with ``explain --app NAME`` when the rules define no such app."""
    if not app or app == DEFAULT_APP.name or any(a.name == app for a in rules.apps):
        return None
    return f"No app named {app!r} in {rules.path}; apps: {', '.join(a.name for a in rules.apps)}"


def render_explain(rules: RuleSet, body: dict[str, Any], *, app: str | None, view: View) -> str:
    problem = unknown_app(rules, app)
    if problem is not None:
        return problem
    spec = next((a for a in rules.apps if a.name == app), None)
    budget_lines, step = _budget_step(spec or DEFAULT_APP, rules, view)
    try:
        facts = facts_from_chat(body)
        decision = choose_route(facts, rules, view.latency,
                                health=Health(providers_down=view.providers_down,
                                              deployments_down=view.deployments_down),
                                app=spec or DEFAULT_APP, detail=True, degrade=step)
    except SidecarError as e:
        return "\n".join([*budget_lines,
                          f"The request would be refused: {e.status_code} {e.message}"])
    out = [
        f"({view.source})",
        f"app: {decision.app}    requested model: {decision.requested_model}",
        f"rule: {decision.rule}",
        f"decision: {decision.reason}" + ("  [shadow: forwarded unchanged]" if decision.shadow
                                          else ""),
        f"request: ~{facts.prompt_tokens} prompt tokens, ~{expected_output_tokens(facts)} "
        f"expected output tokens, needs: {', '.join(sorted(facts.needs)) or 'nothing special'}",
        "plan: " + " -> ".join(f"{t.name} ({t.provider})" for t in decision.plan),
        *budget_lines,
    ]
    unpriced = [t.name for t in decision.plan if t.spec is None]
    if unpriced:
        out.append(f"  (cost unknown: {', '.join(unpriced)} has no catalog price; such calls "
                   "are counted in sidecar_unpriced_calls_total, never as $0)")
    if decision.cooling:
        out.append("  (cooling down: every model of this plan is cooling down after failures; "
                   "nothing else can serve this call, so it is tried rather than refused)")
    if decision.auto is not None:
        out += ["", f"tier auto: score {decision.auto.score:g}/100 -> {decision.auto.tier} "
                f"(thresholds: standard >= {rules.defaults.auto_tier.standard:g}, premium >= "
                f"{rules.defaults.auto_tier.premium:g}; base {BASE_SCORE:g})",
                table(["feature", "points", "what it measures"],
                      [[name, f"{points:+g}", WEIGHTS[name].doc if name in WEIGHTS else ""]
                       for name, points in decision.auto.contributions])]
    if decision.candidates:
        rows = [[i + 1, c.spec.name, c.spec.tier, c.spec.provider, f"{c.cost:.6f}",
                 _latency(view.latency.estimate(c.spec, stream=facts.stream,
                                                output_tokens=expected_output_tokens(facts))),
                 c.spec.quality, c.spec.coding]
                for i, c in enumerate(decision.candidates)]
        out += ["", f"candidates (ranked by {decision.prefer}):",
                table(["#", "model", "tier", "provider", "cost $", "latency s", "quality",
                       "coding"], rows)]
    if decision.excluded:
        out += ["", "excluded:", table(["model", "why"],
                                       [[e.model, e.reason] for e in decision.excluded])]
    return "\n".join(out)


def render_env(values: Mapping[str, str], *, fmt: str, base_url: str | None = None) -> str:
    """Variables as bash, fish or dotenv lines; with ``base_url``, a hint for the other way."""
    if fmt == "bash":
        lines = [f"export {k}={_shell_quote(v)}" for k, v in values.items()]
        hint = f"# base-URL way instead of HTTPS_PROXY: export OPENAI_BASE_URL={base_url}"
    elif fmt == "fish":
        lines = [f"set -gx {k} {_shell_quote(v)}" for k, v in values.items()]
        hint = f"# base-URL way instead of HTTPS_PROXY: set -gx OPENAI_BASE_URL {base_url}"
    else:
        lines = [f"{k}={v}" for k, v in values.items()]
        hint = f"# OPENAI_BASE_URL={base_url}"
    return "\n".join(lines + ([hint] if base_url else []))


def _shell_quote(value: str) -> str:
    if all(c.isalnum() or c in "/._-:@=+," for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"
