"""The labelled corpus of tier auto (``sidecar/data/autotier/``) and the training data made of it.

- the training batches (``TRAINING_BATCHES``) and the older set of issue 8 (``OLD_SET``), which is
  always in the training folds and never tested. ``holdout.yaml`` and ``round2.yaml`` were the
  untouched batches of the first two rounds; evaluated once each, they are training batches now;
- ``untouched.yaml`` (``UNTOUCHED``): the untouched batch, read only to evaluate
  (``model-router eval-tiers``), never to train or to choose anything.

Each entry: id, category, tier (the label), why, request (a chat.completions body), optionally
app and family (entries of one family share a document). This module does not import the
scorer, so the model can be trained when its file is missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from sidecar.core.routing.ask import ask_features
from sidecar.core.routing.features import FEATURES
from sidecar.core.vocabulary import TIERS

CORPUS = "autotier"  # the folder of sidecar/data with the batches
TRAINING_BATCHES = ("support", "docs", "dev", "agents", "reasoning", "holdout", "round2", "borders",
                    "apps", "varied", "families", "devtools", "expertise",
                    "toolflows", "convos", "round3")
OLD_SET = "autotier_eval.yaml"  # the set of issue 8, in sidecar/data: training only
UNTOUCHED = "untouched.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    category: str
    tier: str  # the label: the tier the work asked for needs
    why: str
    request: Mapping[str, Any]
    batch: str = ""
    family: str = ""  # entries of one family share a document


def _read(name: str) -> str:
    return resources.files("sidecar.data").joinpath(name).read_text("utf-8")


def training_files() -> list[str]:
    """The files the model is trained on, relative to sidecar/data, in order."""
    return [f"{CORPUS}/{b}.yaml" for b in TRAINING_BATCHES] + [OLD_SET]


def corpus_digest() -> str:
    """sha256 of the training files (name and text of each, in order)."""
    h = hashlib.sha256()
    for name in training_files():
        h.update(name.encode() + b"\0" + _read(name).encode("utf-8") + b"\0")
    return h.hexdigest()


def parse_entries(text: str, *, batch: str = "") -> list[Entry]:
    doc = yaml.load(text, Loader=_Loader)
    entries = doc.get("entries") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("a labelled set needs a top-level 'entries:' list")
    out: list[Entry] = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            raise ValueError(f"entries[{i}] must be a mapping")
        missing = [k for k in ("id", "category", "tier", "why", "request") if not raw.get(k)]
        if missing:
            raise ValueError(f"entries[{i}] ({raw.get('id')}): missing {', '.join(missing)}")
        if raw["tier"] not in TIERS:
            raise ValueError(f"entries[{i}] ({raw['id']}): tier {raw['tier']!r} is not one of {TIERS}")
        if not isinstance(raw["request"], Mapping) or not isinstance(raw["request"].get("messages"), list):
            raise ValueError(f"entries[{i}] ({raw['id']}): request needs a messages list")
        out.append(Entry(str(raw["id"]), str(raw["category"]), str(raw["tier"]), str(raw["why"]),
                         raw["request"], batch or str(doc.get("batch") or ""),
                         str(raw.get("family") or "")))
    return out


def load_entries(path: str | None = None, *, packaged: str | None = None, batch: str = "") -> list[Entry]:
    """A labelled set: a YAML file, or a packaged one (a name relative to sidecar/data)."""
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return parse_entries(f.read(), batch=batch)
    return parse_entries(_read(packaged or OLD_SET), batch=batch)


def load_training() -> list[Entry]:
    """The training batches, then the old set (batch ``old``)."""
    entries = [e for b in TRAINING_BATCHES for e in load_entries(packaged=f"{CORPUS}/{b}.yaml", batch=b)]
    return entries + load_entries(packaged=OLD_SET, batch="old")


def untouched_available() -> bool:
    return resources.files("sidecar.data").joinpath(f"{CORPUS}/{UNTOUCHED}").is_file()


def load_untouched() -> list[Entry]:
    return load_entries(packaged=f"{CORPUS}/{UNTOUCHED}", batch="untouched")


@dataclass(frozen=True, slots=True)
class TrainingData:
    entries: list[Entry]
    rows: list[dict[str, float]]
    labels: list[int]
    groups: list[str]
    always: list[bool]  # the old set: always trained on, never tested
    names: list[str]  # the features present in the rows, in FEATURES order


def training_data(entries: Sequence[Entry] | None = None) -> TrainingData:
    entries = list(entries) if entries is not None else load_training()
    rows = [ask_features(e.request) for e in entries]
    present = {n for r in rows for n in r}
    return TrainingData(entries, rows, [TIERS.index(e.tier) for e in entries],
                        [e.batch for e in entries], [e.batch == "old" for e in entries],
                        [n for n in FEATURES if n in present])
