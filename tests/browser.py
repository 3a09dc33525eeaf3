"""Open an HTML page in headless Chromium and report console errors, failed loads and broken images.

How, and why this way:
  - Chromium is started headless with --remote-debugging-pipe and driven over the DevTools protocol
    on file descriptors 3 (commands in) and 4 (replies and events out), NUL-separated JSON: no
    websocket client, no port, nothing from the network.
  - Errors are collected from the protocol, not from scraped logs: Runtime.exceptionThrown,
    Runtime.consoleAPICalled of type error/assert, Log.entryAdded of level error (this is where
    "Failed to load resource" goes) and Network.loadingFailed.
  - Broken images: after the load event, the harness (not the page: the page has no JavaScript)
    evaluates document.images and reports every <img> that is not complete or has naturalWidth 0.
  - A full-page screenshot is taken with Page.captureScreenshot.
  - check_static() adds a browser-free check: every <img src> is a relative file that exists beside
    the page and starts with the PNG signature, every relative link resolves, there is no <script>
    and nothing is loaded from the network.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
]


def find_chromium() -> Optional[str]:
    for c in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        p = shutil.which(c) if not c.startswith("/") else (c if os.access(c, os.X_OK) else None)
        if p:
            return p
    return None


# --- static check ----------------------------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for k, v in a.items():
            if k.startswith("on"):
                self.scripts += 1  # inline event handler = JavaScript
            if k in ("src", "href") and v and (urlparse(v).scheme in ("http", "https") or v.startswith("//")):
                if tag != "a":  # a plain hyperlink is not loaded by the page
                    self.external.append(v)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag in ("a", "link") and a.get("href"):
            self.links.append(a["href"])


def check_static(html: Path) -> list[str]:
    """Problems found without a browser: missing or non-PNG images, dead relative links, scripts, network loads."""
    html = Path(html)
    p = _Refs()
    p.feed(html.read_text(encoding="utf-8"))
    problems = []
    if p.scripts:
        problems.append(f"{p.scripts} script tag(s) or inline handler(s): the page must not need JavaScript")
    problems += [f"loads from the network: {u}" for u in p.external]
    for src in p.images:
        u = urlparse(src)
        if u.scheme or src.startswith("/"):
            problems.append(f"image is not a relative link: {src!r}")
            continue
        f = html.parent / unquote(u.path)
        if not f.is_file():
            problems.append(f"missing image: {src}")
        elif f.read_bytes()[:8] != PNG_MAGIC:
            problems.append(f"not a PNG: {src}")
    for href in p.links:
        u = urlparse(href)
        if u.scheme or href.startswith("#") or not u.path:
            continue
        if not (html.parent / unquote(u.path)).exists():
            problems.append(f"dead relative link: {href}")
    return problems


def image_sources(html: Path) -> list[str]:
    p = _Refs()
    p.feed(Path(html).read_text(encoding="utf-8"))
    return p.images


# --- Chromium over the DevTools pipe ------------------------------------------------------------------

@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    screenshot: Optional[Path] = None
    title: str = ""
    content_width: int = 0  # CSS px of the laid-out page: wider than the window means a horizontal page scroll

    @property
    def problems(self) -> list[str]:
        return self.console_errors + self.failed_loads + [f"broken image: {s}" for s in self.broken_images]


class _Pipe:
    def __init__(self, rfd: int, wfd: int, proc: subprocess.Popen):
        self.rfd, self.wfd, self.proc = rfd, wfd, proc
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read_one(self, deadline: float) -> Optional[dict]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 30) -> dict:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> Optional[dict]:
        for e in self.events:
            if e["method"] == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                return None
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                return
            if "method" in msg:
                self.events.append(msg)


def _above_10(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def load_page(html: Path, screenshot: Path, width: int = 1400, timeout: float = 60.0,
              chromium: Optional[str] = None) -> PageReport:
    """Load file://HTML in headless Chromium; collect errors and broken images; save a full-page screenshot."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed")
    html = Path(html).resolve()
    to_child_r, to_child_w = os.pipe()  # we write commands, chromium reads them on fd 3
    from_child_r, from_child_w = os.pipe()  # chromium writes on fd 4, we read
    # Move the child's ends above 10 so that placing them on 3 and 4 cannot clobber one another.
    to_child_r, from_child_w = _above_10(to_child_r), _above_10(from_child_w)
    profile = tempfile.mkdtemp(prefix="dsa-bench-chromium-")
    args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
            f"--window-size={width},1000", "about:blank"]
    # bash places the pipe ends on fds 3 and 4, where --remote-debugging-pipe expects them.
    shell = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
    proc = subprocess.Popen(["bash", "-c", shell, "chromium", *args], pass_fds=(to_child_r, from_child_w),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(to_child_r)
    os.close(from_child_w)
    pipe = _Pipe(from_child_r, to_child_w, proc)
    report = PageReport()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        sid = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True}, timeout=timeout)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.call(f"{domain}.enable", session=sid, timeout=timeout)
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": html.as_uri()}, session=sid, timeout=timeout)
        if pipe.wait_event("Page.loadEventFired", timeout) is None:
            report.console_errors.append(f"the page did not finish loading within {timeout} s")
        pipe.drain(0.5)  # late console messages
        res = pipe.call("Runtime.evaluate", {
            "expression": "JSON.stringify({title: document.title, images: Array.from(document.images).map("
                          "i => [i.getAttribute('src'), i.complete, i.naturalWidth])})",
            "returnByValue": True}, session=sid, timeout=timeout)
        info = json.loads(res["result"]["value"])
        report.title = info["title"]
        report.images = len(info["images"])
        report.broken_images = [src for src, complete, w in info["images"] if not complete or not w]
        metrics = pipe.call("Page.getLayoutMetrics", session=sid, timeout=timeout)
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        report.content_width = int(size["width"])
        height = int(min(max(size["height"], 200), 30000))
        shot = pipe.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session=sid, timeout=timeout)
        screenshot = Path(screenshot)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        report.screenshot = screenshot
        for e in pipe.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                report.console_errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                report.console_errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                                            for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                en = p["entry"]
                report.console_errors.append(f"{en.get('source')}: {en.get('text')} {en.get('url', '')}".strip())
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                report.failed_loads.append(f"failed load ({p.get('errorText')}) request {p.get('requestId')}")
        try:
            pipe.send("Browser.close")
        except OSError:
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the browser started here, renderers included
            proc.wait()
        os.close(from_child_r)
        os.close(to_child_w)
        shutil.rmtree(profile, ignore_errors=True)
    return report
