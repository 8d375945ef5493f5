"""The conformance matrix's axes, its catalog, and what each cell must get.

``tests/e2e/test_conformance.py`` runs every cell of ``CELLS`` (intent x endpoint x JSON/stream x
tools, generated with ``itertools.product``) against one sidecar per ``PROVIDERS`` kind. Each
sidecar's rules (``rules_yaml``) put the whole catalog below on that one provider, so the
provider axis is forced: the built-in catalog's models sit on providers that are not configured.
A second provider, ``origin``, stands in for api.openai.com: the intercepted host's provider,
where passthrough goes, and the only one with ``api_key: from-request``.

The catalog is built so that every (tier, prefer) has one winner (``WINNERS``), with costs
counted for a short prompt and the 500 output tokens the policy expects without ``max_tokens``:

    model      tier      price in/out  quality coding  ttft  tokens/s  tools
    e-cheap    economy   0.01/0.02     10      10      3.0   20        yes
    e-smart    economy   0.30/0.60     30      20      2.0   30        yes
    s-fast     standard  1.00/2.00     25      30      0.01  1000      yes
    s-value    standard  0.20/0.40     35      35      1.0   80        yes
    x-notools  standard  50/100        1       1       9.0   5         no   (never wins)
    p-smart    premium   10/30         60      50      2.0   50        yes
    p-coder    premium   3/15          20      80      1.5   60        yes
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sidecar.core.routing.latency import LatencyTracker

# The wire vocabulary as README.md documents it (not imported: the test states the contract).
PREFERS = ("cheap", "fast", "balanced", "quality", "coding")
TIERS = ("economy", "standard", "premium")

PROVIDERS = ("compat", "native", "bedrock")  # chat-only OpenAI-compatible, native Responses, Bedrock
ENDPOINTS = ("chat", "responses")
MODES = ("json", "stream")
TOOLSETS = ("notools", "tools")
TRANSPORTS = ("proxy", "base-url")  # HTTPS_PROXY (regular listener), OPENAI_BASE_URL (reverse)

APP_KEY = "sk-matrix-app-key-0001"  # the app's own key: only `origin` (from-request) may get it
SIDECAR_KEYS = {"compat": "sk-sidecar-compat-0002", "native": "sk-sidecar-native-0003"}
KEY_VARIABLES = {"compat": "MATRIX_COMPAT_KEY", "native": "MATRIX_NATIVE_KEY"}
SERVING = {"compat": "compat", "native": "native", "bedrock": "aws"}  # kind -> provider name
ORIGIN = "origin"
PASSTHROUGH_MODEL = "ft:gpt-4o-mini:acme::matrix"  # in no catalog: passed through unchanged
AWS_REGION = "us-east-1"

HELLO = "Say hello."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL_NAME, TOOL_ARGUMENTS = "get_weather", {"city": "Oslo"}
CHAT_TOOL = {"type": "function", "function": {
    "name": TOOL_NAME, "description": "Weather for a city", "parameters": SCHEMA}}
RESPONSES_TOOL = {"type": "function", "name": TOOL_NAME, "description": "Weather for a city",
                  "parameters": SCHEMA}
BEDROCK_TOOL = {"toolSpec": {"name": TOOL_NAME, "description": "Weather for a city",
                             "inputSchema": {"json": SCHEMA}}}


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    tier: str
    price: tuple[float, float]
    quality: float
    coding: float
    ttft: float
    tokens_per_second: float
    tools: bool = True

    def entry(self, kind: str) -> dict[str, Any]:
        return {"name": self.name, "provider": SERVING[kind], "id": upstream_id(kind, self.name),
                "tier": self.tier, "price": {"input": self.price[0], "output": self.price[1]},
                "context": 128000, "quality": self.quality, "coding": self.coding,
                "latency": {"ttft": self.ttft, "tokens_per_second": self.tokens_per_second},
                "supports": ["tools"] if self.tools else []}


CATALOG = (
    Row("e-cheap", "economy", (0.01, 0.02), 10, 10, 3.0, 20),
    Row("e-smart", "economy", (0.30, 0.60), 30, 20, 2.0, 30),
    Row("s-fast", "standard", (1.0, 2.0), 25, 30, 0.01, 1000),
    Row("s-value", "standard", (0.20, 0.40), 35, 35, 1.0, 80),
    Row("x-notools", "standard", (50.0, 100.0), 1, 1, 9.0, 5, tools=False),
    Row("p-smart", "premium", (10.0, 30.0), 60, 50, 2.0, 50),
    Row("p-coder", "premium", (3.0, 15.0), 20, 80, 1.5, 60),
)

# tier ("any": no tier) -> prefer -> the one model that must serve. Without a tier, balanced
# takes the default tier (standard); `fast` ranks by the catalog's priors (see PriorsOnly).
WINNERS: Mapping[str, Mapping[str, str]] = {
    "any": {"cheap": "e-cheap", "fast": "s-fast", "quality": "p-smart", "coding": "p-coder"},
    "economy": {"cheap": "e-cheap", "fast": "e-smart", "balanced": "e-cheap",
                "quality": "e-smart", "coding": "e-smart"},
    "standard": {"cheap": "s-value", "fast": "s-fast", "balanced": "s-value",
                 "quality": "s-value", "coding": "s-value"},
    "premium": {"cheap": "p-coder", "fast": "p-coder", "balanced": "p-smart",
                "quality": "p-smart", "coding": "p-coder"},
}


def upstream_id(kind: str, name: str) -> str:
    """The provider's own id of catalog model ``name`` (what the provider must receive)."""
    return f"us.matrix.{name}-v1:0" if kind == "bedrock" else f"{name}-v1"


@dataclass(frozen=True, slots=True)
class Intent:
    """What the app asks for, and what must serve it.

    ``route``: this intent's app routes (the app is matched by ``x-app: <name>``); None: the
    default app, no route. ``serves``: the model a pin or passthrough must be served by;
    ``rank``: (prefer, tier) whose ``WINNERS`` entry must serve ("auto": the tier the sidecar
    reports in x-model-router-auto-tier). ``refuses_tools``: with tools, the documented 400.
    """

    name: str
    model: str
    extra: Mapping[str, str] = field(default_factory=dict)  # sent via extra_body
    route: Mapping[str, Any] | None = None
    serves: str | None = None
    rank: tuple[str, str] | None = None
    refuses_tools: bool = False

    @property
    def app(self) -> str | None:
        return self.name if self.route is not None else None

    @property
    def passthrough(self) -> bool:
        return self.serves == PASSTHROUGH_MODEL

    def expected(self, auto_tier: str | None) -> str:
        if self.serves is not None:
            return self.serves
        assert self.rank is not None
        prefer, tier = self.rank
        return WINNERS[auto_tier if tier == "auto" else tier][prefer]


def _intents() -> Iterator[Intent]:
    # A pin: the request's prefer is ignored (DESIGN.md: "a pinned model: tier/prefer ignored").
    yield Intent("pin", "gpt-4o", {"prefer": "cheap"}, route={"gpt-4o": "e-smart"},
                 serves="e-smart")
    # A pin of a model without tool support: served without tools, the documented 400 with.
    yield Intent("pin-notools", "gpt-4o", route={"gpt-4o": "x-notools"}, serves="x-notools",
                 refuses_tools=True)
    # The operator's passthrough wins over the request's prefer.
    yield Intent("passthrough", PASSTHROUGH_MODEL, {"prefer": "quality"},
                 route={"*": "passthrough"}, serves=PASSTHROUGH_MODEL)
    for prefer in PREFERS:
        yield Intent(f"auto-{prefer}", "auto", {"prefer": prefer},
                     rank=(prefer, "standard" if prefer == "balanced" else "any"))
    for tier in TIERS:  # a tier name as the model: the default prefer (balanced) in that tier
        yield Intent(f"model-{tier}", tier, rank=("balanced", tier))
    # The seed's headline request.
    yield Intent("auto-economy-quality", "auto", {"tier": "economy", "prefer": "quality"},
                 rank=("quality", "economy"))
    yield Intent("tier-auto", "auto", {"tier": "auto"}, rank=("balanced", "auto"))
    yield Intent("tier-auto-route", "gpt-4o",
                 route={"*": {"model": "auto", "tier": "auto", "prefer": "quality"}},
                 rank=("quality", "auto"))
    # Precedence: what the route states wins; the request fills what it leaves open.
    yield Intent("route-prefer", "gpt-4o", {"tier": "economy", "prefer": "cheap"},
                 route={"*": {"model": "auto", "prefer": "quality"}}, rank=("quality", "economy"))
    yield Intent("route-tier", "gpt-4o", {"tier": "economy", "prefer": "cheap"},
                 route={"*": {"model": "auto", "tier": "premium"}}, rank=("cheap", "premium"))


INTENTS = tuple(_intents())


@dataclass(frozen=True, slots=True)
class Cell:
    intent: Intent
    endpoint: str
    stream: bool
    tools: bool
    transport: str

    @property
    def id(self) -> str:
        return "-".join((self.intent.name, self.endpoint, MODES[self.stream],
                         TOOLSETS[self.tools], self.transport))

    @property
    def refused(self) -> bool:
        """The documented 400: a pinned model that cannot serve what the request needs."""
        return self.tools and self.intent.refuses_tools


def _cells() -> Iterator[Cell]:
    axes = (INTENTS, ENDPOINTS, MODES, TOOLSETS)
    for indexed in itertools.product(*(tuple(enumerate(axis)) for axis in axes)):
        (i, intent), (e, endpoint), (m, mode), (t, tools) = indexed
        # A checkerboard: flipping any one axis flips the listener, so every value of every
        # axis is exercised through both.
        transport = TRANSPORTS[(i + e + m + t) % 2]
        yield Cell(intent, endpoint, mode == "stream", tools == "tools", transport)


CELLS = tuple(_cells())


def rules_yaml(kind: str, *, serving_url: str, origin_url: str) -> str:
    """rules.yaml for the sidecar of provider kind ``kind``: the catalog on that provider."""
    origin = {"type": "openai", "base_url": origin_url, "api_key": "from-request",
              "responses": kind != "compat"}
    if kind == "bedrock":
        serving: dict[str, Any] = {"type": "bedrock", "region": AWS_REGION,
                                   "endpoint_url": serving_url}
    else:
        serving = {"type": "openai", "base_url": serving_url,
                   "api_key": f"env:{KEY_VARIABLES[kind]}", "responses": kind == "native"}
    doc = {
        "version": 1,
        "intercept": [{"host": "api.openai.com", "provider": ORIGIN}],
        "providers": {ORIGIN: origin, SERVING[kind]: serving},
        "models": [row.entry(kind) for row in CATALOG],
        "defaults": {"tier": "standard", "prefer": "balanced"},
        "apps": [{"name": i.name, "match": {"header": {"x-app": i.name}}, "routes": dict(i.route)}
                 for i in INTENTS if i.route is not None],
    }
    return yaml.safe_dump(doc, sort_keys=False)


class PriorsOnly(LatencyTracker):
    """A tracker that learns nothing, so ``prefer: fast`` ranks by the catalog's priors.

    Every call in the matrix answers in milliseconds, so observed latencies would reorder
    ``fast`` by scheduling noise from one cell to the next; with no observations the ranking
    is the documented one for models not yet observed. Observed latency is covered by
    tests/test_latency.py and the e2e routing tests, each with a fresh sidecar.
    """

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass

    def penalize(self, *args: Any, **kwargs: Any) -> None:
        pass
