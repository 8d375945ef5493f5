"""The benchmark (``python -m bench``, issue 6) runs: its smoke mode measures every row through
real processes (fake providers, bare mitmproxy, ``python -m sidecar run``, the load generator) and
writes the table, the ratios and the targets as valid JSON.

Speed is never asserted here: only that every row, ratio and target was produced, and that the
requests the benchmark sent were all answered correctly (a benchmark of failing calls would
measure nothing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import HEADER
from bench.run import CONFIGS

REPO = Path(__file__).resolve().parent.parent
CELLS = ("c1", "c32", "stream", "stream_paced")


def test_smoke_run_produces_every_row_ratio_and_target(tmp_path: Path) -> None:
    out = tmp_path / "results" / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    result = json.loads(out.read_text())
    assert result["meta"]["smoke"] is True
    assert list(result["rows"]) == [c.key for c in CONFIGS]
    for cfg in CONFIGS:
        row = result["rows"][cfg.key]
        assert cfg.label in proc.stdout  # the printed table has the row
        for cell in CELLS:
            counted = row[cell].get("requests", row[cell].get("streams"))
            assert counted and counted > 0, (cfg.key, cell, row[cell])
            assert row[cell]["errors"] == 0, (cfg.key, cell, row[cell])
        for key in ("rps", "p50_ms", "p99_ms"):
            assert isinstance(row["c1"][key], float) and isinstance(row["c32"][key], float)
        for key in ("ttfb_p50_ms", "ttfb_p99_ms", "ttlb_p50_ms"):
            assert isinstance(row["stream"][key], float)
            assert isinstance(row["stream_paced"][key], float)
        if cfg.via != "direct":
            assert isinstance(row["c32"]["proxy_cpu_ms_per_req"], float)
        if cfg.hold:
            hold = row["hold"]
            assert hold["open"] == hold["completed"] == hold["requested"] > 0, hold
            assert hold["rss_mb"] > 0

    assert all(isinstance(v, float) for v in result["ratios"].values()), result["ratios"]
    assert len(result["targets"]) == 9
    assert all(t["met"] in (True, False) for t in result["targets"]), result["targets"]
    micro = result["micro"]
    assert micro["transcode"]["events_per_s"] > 0
    assert micro["route"]["models"] == 200 and micro["route"]["apps"] == 50

    table = out.with_suffix(".md").read_text()
    assert "| " + " | ".join(HEADER) + " |" in table
    assert all(f"| {c.label} |" in table for c in CONFIGS)
