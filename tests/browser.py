"""Open a page in headless Chromium and report what a user's browser would see.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies
and events out, each JSON message ended by a NUL byte) with the standard library only. Records
every console message, uncaught exception, log entry (CSP violations, failed loads) and network
request the page makes, evaluates a JavaScript expression in it, and takes a full-page screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")
WIDTH = 1280
# a tiny exec trampoline: put the pipe ends at fd 3 and fd 4, then become Chromium
TRAMPOLINE = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
              "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or another Chromium/Chrome on PATH), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    console: list[dict] = field(default_factory=list)  # {"type", "text"} from console.* calls
    exceptions: list[str] = field(default_factory=list)  # uncaught exceptions
    log: list[dict] = field(default_factory=list)  # {"level", "source", "text", "url"}
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    value: Any = None  # the evaluated expression's value
    screenshot: bytes = b""

    def errors(self) -> list[str]:
        """Console errors and warnings, exceptions, and error-level log entries."""
        out = [f"console.{c['type']}: {c['text']}" for c in self.console if c["type"] in ("error", "warning", "assert")]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [f"log {e['level']} ({e['source']}): {e['text']} {e.get('url', '')}" for e in self.log
                if e["level"] in ("error", "warning")]
        return out

    def foreign_requests(self, page_url: str) -> list[str]:
        """Requests other than the page itself and its inline data: URIs."""
        return [u for u in self.requests if u != page_url and not u.startswith("data:")]


class _Pipe:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, chromium: str, profile: str, timeout: float):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # the child gets the pipe ends at fd 3 (read) and fd 4 (write); keep them clear of 3/4 first
        child_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        for fd in (cmd_r, out_w):
            os.close(fd)
        args = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900", "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, str(child_r), str(child_w), *args],
            pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        os.close(child_r)
        os.close(child_w)
        self.write = os.fdopen(cmd_w, "wb", buffering=0)
        self.read = os.fdopen(out_r, "rb", buffering=0)
        self.deadline = time.monotonic() + timeout
        self.messages: queue.Queue = queue.Queue()
        self.stderr = b""
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.next_id = 0
        self.events: list[dict] = []

    def _reader(self) -> None:
        buf = b""
        while True:
            chunk = self.read.read(65536)
            if not chunk:
                self.messages.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self.messages.put(json.loads(msg))

    def _drain_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.write.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._next()
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def _next(self) -> dict:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Chromium did not answer in time")
        try:
            msg = self.messages.get(timeout=left)
        except queue.Empty:
            raise TimeoutError("Chromium did not answer in time") from None
        if msg is None:
            raise RuntimeError(f"Chromium exited: {self.stderr.decode(errors='replace')[-2000:]}")
        return msg

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001  (already gone)
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.write.close()


def open_page(path: Path, expression: str, *, screenshot: Path | None = None, timeout: float = 90.0,
              chromium: str | None = None) -> PageResult:
    """Load ``path`` (a local HTML file) in a fresh headless Chromium profile, wait for the load
    event, evaluate ``expression`` (its JSON value lands in ``result.value``), and write a
    full-page PNG screenshot to ``screenshot``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH")
    url = Path(path).resolve().as_uri()
    result = PageResult()
    with tempfile.TemporaryDirectory(prefix="onnxcert-chromium-") as profile:
        pipe = _Pipe(chromium, profile, timeout)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.events.clear()
            pipe.call("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired")
            reply = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            if "exceptionDetails" in reply:
                raise RuntimeError(f"the test's expression failed: {reply['exceptionDetails']}")
            result.value = reply["result"].get("value")
            if screenshot is not None:
                size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
                pipe.call("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": int(size["height"]) + 1,
                                                                 "deviceScaleFactor": 1, "mobile": False},
                          session=session)
                shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 session=session)
                result.screenshot = base64.b64decode(shot["data"])
                Path(screenshot).write_bytes(result.screenshot)
            pipe.call("Runtime.evaluate", {"expression": "1"}, session=session)  # flush pending events
        finally:
            pipe.close()
    for ev in pipe.events:
        p = ev.get("params", {})
        method = ev.get("method")
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.console.append({"type": p.get("type"), "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            result.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            result.log.append({k: e.get(k, "") for k in ("level", "source", "text", "url")})
        elif method == "Network.requestWillBeSent":
            result.requests.append(p.get("request", {}).get("url", ""))
    return result
