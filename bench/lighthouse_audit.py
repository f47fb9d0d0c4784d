"""Lighthouse's accessibility audit of the page, as deployed (``python app.py``), in Debian's Chromium.

    python bench/lighthouse_audit.py [--min-score 90]

Prints the score of each run (phone and desktop, English and Chinese browser) and every failing
audit with the elements it names; exits 1 when a run scores under ``--min-score``. Lighthouse
(pinned: 13.x wants Node 22) is installed from the npm registry into ``artifacts/lighthouse/``
on first use; its JSON reports are written there too. The four runs take about 5 minutes on
2 cores, so it is a benchmark script, not a test: ``tests/test_browser_polish.py`` checks names
and keyboard use on every test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from typing import Any

from app_process import ROOT, launched_app

LIGHTHOUSE_VERSION = "12.2.3"
FOLDER = ROOT / "artifacts" / "lighthouse"
BIN = FOLDER / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"
RUNS = {  # name: (preset flags, browser language)
    "phone-en": ([], "en-US"),
    "phone-zh": ([], "zh-CN"),
    "desktop-en": (["--preset=desktop"], "en-US"),
    "desktop-zh": (["--preset=desktop"], "zh-CN"),
}


def install() -> None:
    """Lighthouse into the gitignored ``artifacts/lighthouse`` (npm's ordinary client, exact pin)."""
    if BIN.exists():
        return
    if shutil.which("npm") is None:
        sys.exit("npm is missing: apt-get install -y nodejs npm")
    FOLDER.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "npm",
            "install",
            "--exact",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(FOLDER),
            f"lighthouse@{LIGHTHOUSE_VERSION}",
        ],
        check=True,
    )


def audit(url: str, name: str, preset: list[str], lang: str) -> dict[str, Any]:
    """One Lighthouse run (accessibility only); its JSON report."""
    report = FOLDER / f"report-{name}.json"
    flags = f"--headless --no-sandbox --disable-gpu --lang={lang}"
    subprocess.run(
        [
            str(BIN),
            url,
            "--only-categories=accessibility",
            "--output=json",
            f"--output-path={report}",
            f"--chrome-flags={flags}",
            "--quiet",
            *preset,
        ],
        check=True,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        timeout=300,
    )
    return json.loads(report.read_text())


def failures(report: dict[str, Any]) -> list[str]:
    """Each failing audit (score under 1) with the elements it names."""
    lines = []
    category = report["categories"]["accessibility"]
    for ref in category["auditRefs"]:
        result = report["audits"][ref["id"]]
        if result.get("score") is None or result["score"] >= 1:
            continue
        lines.append(f"  - {ref['id']} (weight {ref['weight']}): {result['title']}")
        for item in (result.get("details") or {}).get("items", [])[:8]:
            node = item.get("node") or {}
            lines.append(f"      {node.get('selector', '')}  {node.get('snippet', '')[:120]}")
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-score", type=int, default=90, help="lowest passing score (0-100)")
    args = parser.parse_args()
    install()
    scores = {}
    with launched_app(free_port(), n_ctx=2048, store=False) as url:
        for name, (preset, lang) in RUNS.items():
            report = audit(url, name, preset, lang)
            scores[name] = round(report["categories"]["accessibility"]["score"] * 100)
            print(f"{name}: accessibility {scores[name]}")
            print("\n".join(failures(report)) or "  (no failing audits)")
    if min(scores.values()) < args.min_score:
        sys.exit(f"a run scored under {args.min_score}")


if __name__ == "__main__":
    main()
