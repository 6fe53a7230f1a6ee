"""Open the built book in headless Chromium: screenshot the assessment page, and fail if any
page requests a URL that is not local (the book must work offline, with no CDN assets).

Every page is loaded with Chromium's network log on (``--log-net-log``); any request a page
initiates (Chromium's own update and time checks are told apart by their missing initiator) whose
URL is neither ``file:``, ``data:``, ``blob:``, ``about:``/``chrome:`` nor a loopback host
is reported and fails the check. ``python -m lcstudy.checkhtml book/_build/html``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars"]
LOCAL = {"", "localhost", "127.0.0.1", "[::1]", "::1"}


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def external_requests(netlog: Path) -> list[str]:
    try:
        log = json.loads(netlog.read_text())
    except (OSError, json.JSONDecodeError):
        # Chromium may leave the closing brackets off when killed: parse what is there
        text = netlog.read_text(errors="replace").rstrip().rstrip(",")
        log = json.loads(text + "]}") if text else {"events": []}
    types = {v: k for k, v in (log.get("constants") or {}).get("logEventTypes", {}).items()}
    bad = []
    for ev in log.get("events", []):
        params = ev.get("params") or {}
        url = params.get("url")
        if not url or types.get(ev.get("type")) != "URL_REQUEST_START_JOB":
            continue
        # requests the browser makes for itself (update checks, time sync) have no initiating
        # origin; everything a page loads has one ("null" for file:// pages)
        if params.get("initiator") == "not an origin":
            continue
        u = urlparse(url)
        if u.scheme in ("file", "data", "blob", "about", "chrome", "chrome-extension", "devtools"):
            continue
        if u.scheme in ("http", "https", "ws", "wss") and (u.hostname or "") in LOCAL:
            continue
        bad.append(url)
    return sorted(set(bad))


def load(browser: str, page: Path, shot: Path | None, tmp: Path) -> list[str]:
    netlog = tmp / f"net-{abs(hash(str(page)))}.json"
    args = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
            "--virtual-time-budget=3000", "--window-size=1280,2400"]
    if shot is not None:
        args.append(f"--screenshot={shot}")
    else:
        args.append("--dump-dom")
    args.append(page.resolve().as_uri())
    subprocess.run(args, capture_output=True, timeout=120)
    return external_requests(netlog) if netlog.exists() else []


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    html = Path(argv[0] if argv else "book/_build/html")
    if not (html / "index.html").exists():
        print(f"error: no built book at {html}; run `make book` (or `make html`) first", file=sys.stderr)
        return 2
    browser = chromium()
    if browser is None:
        print("error: Chromium not found; install Debian's package: apt-get install chromium", file=sys.stderr)
        return 2
    shots = html.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and p.name not in ("search.html",
                                                                                                  "genindex.html"))
    failures = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for page in pages:
            shot = shots / "assessment.png" if page.name == "assessment.html" else None
            bad = load(browser, page, shot, tmp)
            if bad:
                failures[str(page.relative_to(html))] = bad
    assessment_shot = shots / "assessment.png"
    print(f"checked {len(pages)} pages in headless Chromium; screenshot: {assessment_shot}"
          + ("" if assessment_shot.exists() else " (missing!)"))
    if failures:
        for page, urls in failures.items():
            print(f"non-local requests from {page}: {', '.join(urls[:5])}", file=sys.stderr)
        return 1
    if not assessment_shot.exists():
        print("error: no assessment page screenshot was made", file=sys.stderr)
        return 1
    print("no page requested a non-local URL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
