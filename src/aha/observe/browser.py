"""Open a page in headless Chromium over the DevTools protocol: screenshot, console errors, requests.

Used to check that a report really renders (tests) and to take the README screenshot. The protocol
runs over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-terminated JSON), which needs no
port, no websocket library and cannot collide with another Chromium on the machine.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """$AHA_CHROMIUM, else the first Chromium/Chrome on PATH."""
    if os.environ.get("AHA_CHROMIUM"):
        return shutil.which(os.environ["AHA_CHROMIUM"])  # None when it is not an executable
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@dataclass
class PageCheck:
    screenshot: Path
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    external_requests: list[str] = field(default_factory=list)  # URLs other than file:, data:, about:
    images: list[dict] = field(default_factory=list)  # alt, naturalWidth, and box x/y/w/h in CSS px
    size: tuple[int, int] = (0, 0)  # screenshot width, height in CSS px


class _Pipe:
    """Minimal DevTools client over the pipe: commands with ids, events queued as they arrive."""

    def __init__(self, write_fd: int, read_fd: int, timeout: float):
        self.write_fd, self.read_fd, self.timeout = write_fd, read_fd, timeout
        self.buffer, self.events, self.next_id = b"", [], 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self.next_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, name: str) -> dict:
        seen = next((e for e in self.events if e.get("method") == name), None)
        return seen or self._until(lambda m: m.get("method") == name)

    def _until(self, wanted) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise BrowserError(f"no answer from Chromium within {self.timeout:.0f} s")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe")
            self.buffer += chunk


def render_page(page: str | Path, screenshot: str | Path, width: int = 1280, chromium: str | None = None,
                timeout: float = 60.0) -> PageCheck:
    """Load `page` (a local file), wait for its load event, and save a full-page PNG screenshot."""
    exe = chromium or find_chromium()
    if exe is None:
        raise BrowserError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}; or set AHA_CHROMIUM)")
    profile = tempfile.mkdtemp(prefix="aha-chromium-")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def wire_fds():  # in the child: Chromium reads commands on fd 3 and writes replies on fd 4
        # Duplicate first so that neither source can be clobbered by the other's dup2.
        a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
        os.dup2(a, 3)
        os.dup2(b, 4)
        os.set_inheritable(3, True)  # dup2(fd, fd) is a no-op that keeps close-on-exec
        os.set_inheritable(4, True)

    # close_fds=False because pass_fds would need 3 and 4 open in *this* process; Python's own
    # descriptors are non-inheritable (PEP 446), so nothing else leaks into Chromium.
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"], preexec_fn=wire_fds,
                            close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(to_chrome_w, from_chrome_r, timeout)
    try:
        return _inspect(pipe, Path(page).resolve().as_uri(), Path(screenshot), width)
    finally:
        _shutdown(proc, pipe)
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        shutil.rmtree(profile, ignore_errors=True)


def _inspect(pipe: _Pipe, url: str, screenshot: Path, width: int) -> PageCheck:
    target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": url}, session)
    pipe.wait_event("Page.loadEventFired")
    height = int(_evaluate(pipe, session, "document.documentElement.scrollHeight"))
    height = max(1, min(height, 16000))  # Chromium caps textures; a report is far shorter than this
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
    images = json.loads(_evaluate(pipe, session, _IMAGES_JS))
    shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    errors, external = _problems(pipe.events)
    return PageCheck(screenshot, errors, external, images, (width, height))


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => { const r = i.getBoundingClientRect();
 return {alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
         x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}; }))"""


def _evaluate(pipe: _Pipe, session: str, expression: str):
    result = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
    if "exceptionDetails" in result:
        raise BrowserError(f"evaluating {expression[:40]!r}: {result['exceptionDetails'].get('text')}")
    return result["result"].get("value")


def _problems(events: list[dict]) -> tuple[list[str], list[str]]:
    errors, external = [], []
    for event in events:
        method, p = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            errors.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:", "about:")):
                external.append(url)
    return errors, external


def _shutdown(proc: subprocess.Popen, pipe: _Pipe) -> None:
    try:
        os.write(pipe.write_fd, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
    except OSError:  # the browser is already gone
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()  # only the process this module started
        proc.wait(timeout=10)
