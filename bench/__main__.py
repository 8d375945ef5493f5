"""``python -m bench``: the overhead benchmark of issue 6 (see bench/RESULTS.md).

    .venv/bin/python -m bench                 # full run, ~2.5 min on a quiet machine
    .venv/bin/python -m bench --smoke         # a few seconds per row: checks that it all runs
    .venv/bin/python -m bench --write-md      # also refresh the table in bench/RESULTS.md

Loopback only; every loop is bounded in count and time. Writes bench/results/latest.json (and
.md) unless ``--out`` says where; ``--workdir`` keeps the processes' logs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import micro, report
from bench.procs import QUIET, REPO, pin, wait_quiet
from bench.run import CONFIGS, SMOKE, Plan, measure

RESULTS_MD = REPO / "bench" / "RESULTS.md"
README_MD = REPO / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())[1]  # type: ignore[index]
    except (OSError, TypeError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import mitmproxy.version

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "mitmproxy": mitmproxy.version.VERSION}


def host_speed() -> list[float]:
    """Per core, the milliseconds a fixed pure-Python loop takes (best of 5; lower is faster).
    This VM's host moves every absolute number of a run (up to ~2x between runs), and not
    always on every core alike: recorded at the start and the end of each run, it tells a slow
    period from a regression."""
    def once() -> float:
        started = time.perf_counter()
        sum(i * i for i in range(200_000))
        return (time.perf_counter() - started) * 1000

    cores = sorted(os.sched_getaffinity(0))
    every = set(range(os.cpu_count() or 1))
    speeds = []
    try:
        for core in sorted(every):
            os.sched_setaffinity(0, {core})
            speeds.append(round(min(once() for _ in range(5)), 2))
    finally:
        os.sched_setaffinity(0, cores)
    return speeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (the test suite's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--workdir", type=Path, help="logs, CA and rules (default: a temp dir)")
    parser.add_argument("--write-md", action="store_true",
                        help="refresh the table in bench/RESULTS.md and the README")
    parser.add_argument("--only", default="", metavar="KEY,...",
                        help=f"measure only these rows: {', '.join(c.key for c in CONFIGS)}")
    parser.add_argument("--no-hold", action="store_true", help="skip the open-streams RSS cells")
    parser.add_argument("--sidecar-module", default="sidecar", metavar="MODULE",
                        help="run the sidecar as `python -m MODULE run ...` (to A/B a change)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each row, wait up to this long for other processes to go "
                        "quiet (default 0: measure at once)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else Plan()
    only = tuple(k for k in args.only.split(",") if k)
    unknown = set(only) - {c.key for c in CONFIGS}
    if unknown:
        parser.error(f"unknown row(s): {', '.join(sorted(unknown))}")
    plan = replace(plan, only=only, hold=0 if args.no_hold else plan.hold,
                   sidecar_module=args.sidecar_module, wait_quiet=args.wait_quiet)
    started = time.monotonic()
    speed_before = host_speed()
    print(f"model-router bench ({'smoke' if plan.smoke else 'full'}): loopback only", flush=True)
    busy = wait_quiet(args.wait_quiet)
    if busy > QUIET:
        print(f"  warning: other processes keep {busy:.2f} cores busy; the numbers will be "
              "disturbed (see the last column)", flush=True)
    result: dict[str, Any] = measure(plan, args.workdir)
    pin(os.getpid(), 1)  # the micro-benchmarks: one core, nothing else running
    result["micro"] = micro.run(plan.micro_seconds, plan.route_samples)
    result["ratios"] = report.ratios(result["rows"])
    result["targets"] = report.targets(result["rows"], result["ratios"], result["micro"])
    result["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench" + (" --smoke" if plan.smoke else "")
        + (f" --sidecar-module {plan.sidecar_module}" if plan.sidecar_module != "sidecar" else ""),
        "machine": machine(), "seconds": round(time.monotonic() - started, 1),
        "smoke": plan.smoke, "others_busy_cores_before": round(busy, 2),
        "reference_loop_ms": [speed_before, host_speed()],
    }
    text = report.render_text(result)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    markdown = report.render_markdown(result)
    args.out.with_suffix(".md").write_text(markdown + "\n")
    if args.write_md:
        write_results_md(result)
    print(f"wrote {args.out} ({result['meta']['seconds']} s)")
    return 0


def write_results_md(result: dict[str, Any]) -> None:
    """The tables between the markers of bench/RESULTS.md (with the ratios and micro-benchmarks)
    and of the README (the tables only), when it has them."""
    meta = result["meta"]
    m = meta["machine"]
    measured = (f"Measured {meta['date']} on {m['cpu']} ({m['cores']} cores, "
                f"{m['memory_gib']} GiB), {m['os']}, Python {m['python']}, mitmproxy "
                f"{m['mitmproxy']}; `{meta['command']}` took {meta['seconds']} s; host speed, "
                f"a reference loop per core: {_ms(meta['reference_loop_ms'][0])} ms at the start, "
                f"{_ms(meta['reference_loop_ms'][1])} ms at the end (lower is faster; see "
                "bench/RESULTS.md).")
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    RESULTS_MD.write_text(_between(text, f"{measured}\n\n{report.render_markdown(result)}"))
    readme = README_MD.read_text()
    if BEGIN in readme:
        README_MD.write_text(_between(readme, f"{measured}\n\n"
                                              f"{report.render_markdown(result, details=False)}"))


def _ms(values: list[float]) -> str:
    return " / ".join(f"{v:g}" for v in values)


def _between(text: str, block: str) -> str:
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"


if __name__ == "__main__":
    sys.exit(main())
