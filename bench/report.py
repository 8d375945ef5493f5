"""The table, the ratios and the targets of issue 6, from one run's measurements."""

from __future__ import annotations

from typing import Any

HEADER = ("config", "c=1 req/s", "p50 ms", "p99 ms", "c=32 req/s", "p50 ms", "p99 ms",
          "TTFB p50", "p99", "TTLB p50", "paced TTFB p50", "CPU ms/req c1", "c32", "stream",
          "RSS MB", "others' CPU")
NOISY = 0.15  # cores used by processes outside the bench during a cell: its numbers are suspect


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def ratios(rows: dict[str, Any]) -> dict[str, float | None]:
    d, db, bare = rows.get("direct"), rows.get("direct-bedrock"), rows.get("bare")
    lean = rows.get("bare-lean")
    pin, auto, br = rows.get("sidecar-pin"), rows.get("sidecar-auto"), rows.get("sidecar-bedrock")
    hit, miss = rows.get("sidecar-cache-hit"), rows.get("sidecar-cache-miss")
    return {
        "added_p50_ms_c1_cache_hit": _sub(_get(hit, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "added_p50_ms_c1_cache_miss": _sub(_get(miss, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "latency_ratio_c1_cache_hit_over_miss": _div(_get(hit, "c1", "p50_ms"),
                                                     _get(miss, "c1", "p50_ms")),
        "added_p50_ms_c1_pin": _sub(_get(pin, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "added_p50_ms_c1_auto_relay": _sub(_get(auto, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "added_p50_ms_c1_bare": _sub(_get(bare, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "added_p50_ms_c1_bare_lean": _sub(_get(lean, "c1", "p50_ms"), _get(d, "c1", "p50_ms")),
        "added_p50_ms_c1_bedrock": _sub(_get(br, "c1", "p50_ms"), _get(db, "c1", "p50_ms")),
        "latency_ratio_c1_pin_over_direct": _div(_get(pin, "c1", "p50_ms"),
                                                 _get(d, "c1", "p50_ms")),
        "throughput_c32_pin_over_bare": _div(_get(pin, "c32", "rps"), _get(bare, "c32", "rps")),
        "throughput_c32_pin_over_bare_lean": _div(_get(pin, "c32", "rps"),
                                                  _get(lean, "c32", "rps")),
        "throughput_c32_bare_lean_over_bare": _div(_get(lean, "c32", "rps"),
                                                   _get(bare, "c32", "rps")),
        "cpu_capacity_c32_pin_over_bare": _div(_get(bare, "c32", "proxy_cpu_ms_per_req"),
                                               _get(pin, "c32", "proxy_cpu_ms_per_req")),
        "cpu_capacity_c32_pin_over_bare_lean": _div(_get(lean, "c32", "proxy_cpu_ms_per_req"),
                                                    _get(pin, "c32", "proxy_cpu_ms_per_req")),
        "throughput_c32_auto_over_bare": _div(_get(auto, "c32", "rps"), _get(bare, "c32", "rps")),
        "throughput_c32_direct_over_pin": _div(_get(d, "c32", "rps"), _get(pin, "c32", "rps")),
        "added_ttfb_p50_ms_openai": _sub(_get(pin, "stream", "ttfb_p50_ms"),
                                         _get(d, "stream", "ttfb_p50_ms")),
        "added_ttfb_p50_ms_openai_auto": _sub(_get(auto, "stream", "ttfb_p50_ms"),
                                              _get(d, "stream", "ttfb_p50_ms")),
        "added_ttfb_p50_ms_bare": _sub(_get(bare, "stream", "ttfb_p50_ms"),
                                       _get(d, "stream", "ttfb_p50_ms")),
        "added_ttfb_p50_ms_bare_lean": _sub(_get(lean, "stream", "ttfb_p50_ms"),
                                            _get(d, "stream", "ttfb_p50_ms")),
        "added_ttfb_p50_ms_bedrock": _sub(_get(br, "stream", "ttfb_p50_ms"),
                                          _get(db, "stream", "ttfb_p50_ms")),
        "added_paced_ttfb_p50_ms_openai": _sub(_get(pin, "stream_paced", "ttfb_p50_ms"),
                                               _get(d, "stream_paced", "ttfb_p50_ms")),
        "added_paced_ttfb_p50_ms_bare": _sub(_get(bare, "stream_paced", "ttfb_p50_ms"),
                                             _get(d, "stream_paced", "ttfb_p50_ms")),
        "added_paced_ttfb_p50_ms_bedrock": _sub(_get(br, "stream_paced", "ttfb_p50_ms"),
                                                _get(db, "stream_paced", "ttfb_p50_ms")),
    }


def targets(rows: dict[str, Any], r: dict[str, float | None],
            micro: dict[str, Any]) -> list[dict[str, Any]]:
    hold = _get(rows, "sidecar-pin", "hold") or {}
    complete = (hold.get("open") == hold.get("requested") == hold.get("completed")
                if hold else None)

    def t(name: str, value: float | None, op: str, goal: float,
          extra: bool | None = True) -> dict[str, Any]:
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        return {"target": name, "value": value, "goal": f"{op} {goal:g}",
                "met": None if met is None or extra is None else bool(met and extra)}

    return [
        t("c=1 p50 added over direct, HTTPS_PROXY, pin (ms)", r["added_p50_ms_c1_pin"],
          "<=", 2.0),
        t("c=32 throughput sidecar(pin) / bare mitmproxy", r["throughput_c32_pin_over_bare"],
          ">=", 1.4),
        t("stream TTFB added over direct, OpenAI-compatible, burst (ms)",
          r["added_ttfb_p50_ms_openai"], "<=", 3.0),
        t("stream TTFB added over direct, OpenAI-compatible, paced (ms)",
          r["added_paced_ttfb_p50_ms_openai"], "<=", 3.0),
        t("stream TTFB added over direct, Bedrock, burst (ms)", r["added_ttfb_p50_ms_bedrock"],
          "<=", 3.0),
        t("stream TTFB added over direct, Bedrock, paced (ms)",
          r["added_paced_ttfb_p50_ms_bedrock"], "<=", 3.0),
        t("Bedrock transcoding, one core (events/s)", _get(micro, "transcode", "events_per_s"),
          ">=", 50000),
        t(f"RSS with {hold.get('requested', '?')} open streams, none dropped (MB)",
          hold.get("rss_mb"), "<=", 300, complete),
        t("routing decision p99, 200 models x 50 apps, worst scenario (us)",
          _get(micro, "route", "worst_p99_us"), "<=", 50),
    ]


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def table_rows(rows: dict[str, Any]) -> list[tuple[str, ...]]:
    out = []
    for row in rows.values():
        c1, c32, s = row.get("c1", {}), row.get("c32", {}), row.get("stream", {})
        rss = _get(row, "hold", "rss_mb")
        out.append((row["label"], _f(c1.get("rps"), 0), _f(c1.get("p50_ms"), 2),
                    _f(c1.get("p99_ms"), 2), _f(c32.get("rps"), 0), _f(c32.get("p50_ms")),
                    _f(c32.get("p99_ms")), _f(s.get("ttfb_p50_ms"), 2), _f(s.get("ttfb_p99_ms"), 2),
                    _f(s.get("ttlb_p50_ms"), 2),
                    _f(_get(row, "stream_paced", "ttfb_p50_ms"), 2),
                    _f(c1.get("proxy_cpu_ms_per_req"), 2),
                    _f(c32.get("proxy_cpu_ms_per_req"), 2), _f(s.get("proxy_cpu_ms_per_req"), 2),
                    _f(rss, 0), _f(noise(row), 2) + (" !" if (noise(row) or 0) > NOISY else "")))
    return out


def noise(row: dict[str, Any]) -> float | None:
    """The most CPU (in cores) that other processes used during one of this row's cells."""
    values = [_get(row, c, "foreign_cpu_util") for c in ("c1", "c32", "stream", "stream_paced")]
    return max((v for v in values if v is not None), default=None)


def render_text(result: dict[str, Any]) -> str:
    lines = table_rows(result["rows"])
    widths = [max(len(x[i]) for x in [HEADER, *lines]) for i in range(len(HEADER))]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                             strict=True)))
    text = [fmt(HEADER), fmt(tuple("-" * w for w in widths)), *(fmt(x) for x in lines), ""]
    text += _details(result)
    speed = result.get("meta", {}).get("reference_loop_ms")
    if speed:
        text.append(f"host speed (a reference loop per core, ms; lower is faster): {speed[0]} "
                    f"at the start, {speed[1]} at the end")
    return "\n".join(text)


def _details(result: dict[str, Any]) -> list[str]:
    out = []
    noisy = [k for k, row in result["rows"].items() if (noise(row) or 0) > NOISY]
    if noisy:
        out.append(f"WARNING: other processes used > {NOISY} cores during {', '.join(noisy)}: "
                   "those numbers are disturbed; re-run on a quiet machine.")
    out.append("ratios:")
    out += [f"  {k} = {_f(v, 2)}" for k, v in result["ratios"].items()]
    for key, row in result["rows"].items():
        if "hold" in row:
            h = row["hold"]
            out.append(f"open streams ({key}): {h['open']}/{h['requested']} open, "
                       f"{h['completed']} completed, RSS {h['rss_before_mb']:.0f} -> "
                       f"{h['rss_mb']:.0f} MB, {h['fds']} fds, listen overflows "
                       f"{h['listen_overflows']}, opened in {h['open_seconds']:.1f} s")
    tr = result["micro"]["transcode"]
    out.append(f"transcode: {tr['frame_chunks_events_per_s']:,.0f} events/s (frame chunks), "
               f"{tr['16k_chunks_events_per_s']:,.0f} events/s (16 KiB chunks)")
    out.append("routing decision (us, app 50 of 50):")
    for name, v in result["micro"]["route"].items():
        if isinstance(v, dict):
            out.append(f"  {name}: p50 {v['p50_us']:.1f}, p99 {v['p99_us']:.1f} "
                       f"({v['kind']}, plan of {v['plan']})")
    out.append("targets (issue 6):")
    for t in result["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["met"]]
        out.append(f"  [{mark}] {t['target']}: {_f(t['value'], 2)} (goal {t['goal']})")
    return out


def render_markdown(result: dict[str, Any], *, details: bool = True) -> str:
    """The table and the targets (and, with ``details``, the ratios and micro-benchmarks)."""
    lines = table_rows(result["rows"])
    md = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(x) + " |" for x in lines]
    md += ["", "| target (issue 6) | value | goal | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        mark = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        md.append(f"| {t['target']} | {_f(t['value'], 2)} | {t['goal']} | {mark} |")
    if details:
        md += ["", "```", *_details(result), "```"]
    return "\n".join(md)
