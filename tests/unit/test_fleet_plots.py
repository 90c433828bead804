"""bench/plots/fleet_plots.py: reads bench_fleet.py's table and draws its PNGs (no timing is checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "plots" / "fleet_plots.py"

# bench_fleet.py's table, as it prints it (two sizes, one round)
OUTPUT = """median of 1 rounds; seconds for the whole phase (both hosts in parallel); ms per guest = seconds / all guests
fleet  phase     base s  ours s  base ms/guest  ours ms/guest  ours/base  paired
-----  --------  ------  ------  -------------  -------------  ---------  ------
2x1    create      0.90    6.10          450.0         3050.0      6.78x   6.78x
2x1    rerun       0.20    3.00          100.0         1500.0     15.00x  15.00x
2x1    teardown    0.30    2.50          150.0         1250.0      8.33x   8.33x
2x2    create      1.10    6.50          275.0         1625.0      5.91x   5.91x
2x2    rerun       0.21    3.10           52.5          775.0     14.76x  14.76x
2x2    teardown    0.35    2.60           87.5          650.0      7.43x   7.43x
KiB per idle guest, 2x2 fleet up (median of 1 rounds; kernel objects and root files are machine-wide deltas)
"""


@pytest.fixture(scope="module")
def plots():
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("fleet_plots", str(SCRIPT))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_reads_every_row(plots):
    rows = plots.parse(OUTPUT)
    assert len(rows) == 6
    assert rows[0] == {"hosts": 2, "size": 1, "phase": "create", "base": 0.9, "ours": 6.1}
    assert [(r["size"], r["phase"]) for r in rows[3:]] == [(2, "create"), (2, "rerun"), (2, "teardown")]


def test_plot_draws_both_pngs_on_a_tiny_size(plots, tmp_path):
    data = tmp_path / "fleet.json"
    data.write_text(json.dumps({"machine": "test", "rounds": 1, "rows": plots.parse(OUTPUT)}))
    assert plots.main(["plot", "--json", str(data), "--out", str(tmp_path / "docs")]) == 0
    for name in ("fleet-seconds.png", "fleet-ms-per-guest.png"):
        png = (tmp_path / "docs" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
