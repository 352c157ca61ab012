"""bench/locust_regions.py end to end in a tiny configuration: two regions (two gateways and HAProxy each, a
standalone redis-server each, one PostgreSQL ledger), 2 locust users for a few seconds. The scenario must come
back with both regions in its report, no failed request, and an audit that passes (the ledger verifies, no
balance below zero, one billed record per request served, in the region that served it)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_two_regions_under_locust_serve_every_request_and_the_ledger_verifies(tmp_path):
    report_path = tmp_path / "report.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "locust_regions.py"), "--redis", "standalone",
                          "--users", "2", "--seconds", "3", "--merchants", "1", "--customers", "2",
                          "--json", str(report_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    [result] = json.loads(report_path.read_text())["results"]
    assert result["deployment"] == "standalone"
    regions = result["regions"]
    assert set(regions) == {"eu", "us"}, regions
    for name, region in regions.items():
        assert region["requests"] > 0 and region["failures"] == 0, (name, region)
    audit = result["audit"]
    assert audit["ok"], audit["problems"]
    assert audit["ledger_verify"]["ok"] and audit["ledger_verify"]["transfers"] > 0
    assert audit["served_records"] == {name: r["requests"] for name, r in regions.items()}
