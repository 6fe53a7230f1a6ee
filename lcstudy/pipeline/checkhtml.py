"""Open every page of the built book in headless Chromium and fail if any page requests a URL that
is not local (the book must work offline, with no CDN assets); screenshot three chapters at a
laptop's width.

Every page is loaded with Chromium's network log on (``--log-net-log``). A page passes only when
the log exists and parses, and the DOM Chromium dumps holds the page's own title — a browser that
did not run, or crashed, writes neither and fails the check instead of passing it. Any request a page
initiates (Chromium's own update and time checks are told apart by their missing initiator) whose
URL is neither ``file:``, ``data:``, ``blob:``, ``about:``/``chrome:`` nor a loopback host fails the
check. ``python -m lcstudy.pipeline.checkhtml book/_build/html``.
"""
from __future__ import annotations

import html as html_lib
import json
import re
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
#: the chapters screenshotted at 1280 px (the pages a reader sees first)
SHOTS = ("assessment", "flops_runtime", "scaling")


class NoNetLog(Exception):
    """Chromium left no usable network log for a page: it did not load the page."""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def read_netlog(netlog: Path) -> dict:
    if not netlog.exists() or netlog.stat().st_size == 0:
        raise NoNetLog(f"no network log at {netlog}")
    try:
        return json.loads(netlog.read_text())
    except json.JSONDecodeError:
        # Chromium may leave the closing brackets off when killed: parse what is there
        text = netlog.read_text(errors="replace").rstrip().rstrip(",")
        try:
            return json.loads(text + "]}")
        except json.JSONDecodeError as e:
            raise NoNetLog(f"unreadable network log {netlog}: {e}") from None


def requests(log: dict) -> list[tuple[str, str]]:
    """(url, initiator) of every URL request the log records."""
    types = {v: k for k, v in (log.get("constants") or {}).get("logEventTypes", {}).items()}
    out = []
    for ev in log.get("events", []):
        params = ev.get("params") or {}
        if params.get("url") and types.get(ev.get("type")) == "URL_REQUEST_START_JOB":
            out.append((params["url"], params.get("initiator", "")))
    return out


def external_requests(log: dict) -> list[str]:
    bad = []
    for url, initiator in requests(log):
        # requests the browser makes for itself (update checks, time sync) have no initiating
        # origin; everything a page loads has one ("null" for file:// pages)
        if initiator == "not an origin":
            continue
        u = urlparse(url)
        if u.scheme in ("file", "data", "blob", "about", "chrome", "chrome-extension", "devtools"):
            continue
        if u.scheme in ("http", "https", "ws", "wss") and (u.hostname or "") in LOCAL:
            continue
        bad.append(url)
    return sorted(set(bad))


def _title(html: str) -> str | None:
    m = re.search(r"<title[^>]*>(.*?)</title>", html, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html_lib.unescape(m.group(1))).strip() if m else None


def load(browser: str, page: Path, shot: Path | None, tmp: Path) -> list[str]:
    """Load ``page``; return its non-local requests. Raises :class:`NoNetLog` when Chromium left no
    network log or did not render the page.

    Chromium does not log ``file:`` loads in its network log, so "the page was loaded" is proved by
    the DOM Chromium dumps: it must hold the page's own ``<title>`` (or, without one, an ``<html>``
    element). A screenshot, when asked for, is taken by a second run and must exist and not be empty.
    """
    netlog = tmp / f"net-{abs(hash(str(page)))}.json"
    netlog.unlink(missing_ok=True)
    base = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=3000",
            "--window-size=1280,2400"]
    out = subprocess.run([*base, f"--log-net-log={netlog}", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, timeout=120, text=True, errors="replace")
    log = read_netlog(netlog)
    title = _title(page.read_text(errors="replace"))
    dom = out.stdout or ""
    if "<html" not in dom.lower() or (title is not None and _title(dom) != title):
        raise NoNetLog(f"Chromium did not render {page.name} (its dumped DOM lacks the page's title)")
    if shot is not None:
        shot.unlink(missing_ok=True)
        subprocess.run([*base, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=120)
        if not shot.exists() or shot.stat().st_size == 0:
            raise NoNetLog(f"Chromium wrote no screenshot of {page.name}")
    return external_requests(log)


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
    pages = sorted(html.rglob("*.html"))
    failures: dict[str, str] = {}
    taken = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for page in pages:
            shot = shots / f"{page.stem}.png" if page.parent == html and page.stem in SHOTS else None
            try:
                bad = load(browser, page, shot, tmp)
            except NoNetLog as e:
                failures[str(page.relative_to(html))] = str(e)
                continue
            except subprocess.TimeoutExpired:
                failures[str(page.relative_to(html))] = "Chromium did not finish within 120 s"
                continue
            if bad:
                failures[str(page.relative_to(html))] = "non-local requests: " + ", ".join(bad[:5])
            if shot is not None and shot.exists():
                taken.append(shot)
    print(f"checked {len(pages)} pages in headless Chromium; screenshots (1280 px wide): "
          + (", ".join(str(s) for s in taken) or "none"))
    if failures:
        for page, why in failures.items():
            print(f"{page}: {why}", file=sys.stderr)
        return 1
    missing = [s for s in SHOTS if (html / f"{s}.html").exists() and not (shots / f"{s}.png").exists()]
    if missing:
        print(f"error: no screenshot of {', '.join(missing)}", file=sys.stderr)
        return 1
    print("no page requested a non-local URL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
