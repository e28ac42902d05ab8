"""Drive headless Chromium over ``--remote-debugging-pipe`` (DevTools protocol, standard library only).

Chromium reads commands from file descriptor 3 and writes replies and events to descriptor 4, each
message a JSON object terminated by a NUL byte. :func:`check_page` opens one page, waits until its
Bokeh documents say they are idle (every view rendered), and returns what a person checking the page
by eye would want to know: canvases drawn, console errors, uncaught exceptions, network loads that
failed or left the machine, and a full-page screenshot.

Every wait ends when what it waits for has happened; its time limit (:data:`PATIENCE_S`) only stops a
Chromium that never answers, and is long enough for a machine slowed down five times by other work.
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
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)

#: Seconds any one wait may take before Chromium is taken to have hung (the waits end on readiness).
PATIENCE_S = 300.0

# Counts canvases in the document and in every (nested) shadow root: Bokeh draws inside shadow DOM.
_COUNT_JS = """
(() => {
  let canvases = 0;
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.tagName === 'CANVAS') canvases++;
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return JSON.stringify({
    canvases: canvases,
    roots: document.querySelectorAll('[data-root-id]').length,
    height: document.documentElement.scrollHeight,
    bokeh: typeof window.Bokeh !== 'undefined',
  });
})()
"""

# Whether the page has loaded and every Bokeh document has rendered all its roots (Document.is_idle):
# as many roots as the page has placeholders for.
_READY_JS = """
(() => {
  if (document.readyState !== 'complete' || typeof window.Bokeh === 'undefined') return false;
  const docs = Bokeh.documents;
  const roots = docs.reduce((n, d) => n + d.roots().length, 0);
  return docs.length > 0 && docs.every((d) => d.is_idle)
    && roots >= document.querySelectorAll('[data-root-id]').length;
})()
"""


# Moves the first slider to its end and reports whether what is shown changed (plotted data or which
# views are visible): a static file must carry every frame (a DynamicMap would need a live server).
_SLIDER_JS = """
new Promise((resolve) => {
  const doc = Bokeh.documents[0];
  const signature = () => JSON.stringify([...doc.all_models].map((m) => [
    m.visible === true,
    m.type === 'ColumnDataSource' ? Object.values(m.data).map((c) => Array.from(c ?? []).slice(0, 99)) : 0,
  ]));
  const slider = [...doc.all_models].find((m) => m.type === 'Slider');
  if (!slider) { resolve(JSON.stringify(null)); return; }
  const before = signature();
  slider.value = slider.end;
  const deadline = Date.now() + 30000;  // no change in 30 s: the frames are not in the file
  const poll = () => {
    if (signature() !== before) resolve(JSON.stringify(true));
    else if (Date.now() > deadline) resolve(JSON.stringify(false));
    else setTimeout(poll, 50);
  };
  poll();
})
"""


# What a reader would see as broken layout: the page scrolling sideways, a table or plot wider than
# the card it sits in (or than the window), and an axis label or title of a Bokeh plot running past
# its canvas (cut off). Text is measured with the font Bokeh draws it with.
LAYOUT_JS = r"""
(() => {
  const problems = [];
  const page = document.documentElement.scrollWidth, win = window.innerWidth;
  if (page > win + 1) problems.push(`the page scrolls sideways: ${page} px wide in a ${win} px window`);
  const up = (el) => el.parentElement || (el.getRootNode() ? el.getRootNode().host : null) || null;
  const cardOf = (el) => {
    for (let e = up(el); e; e = up(e)) if (e.classList && e.classList.contains('card')) return e;
    return null;
  };
  const walk = (root, f) => root.querySelectorAll('*').forEach((el) => {
    f(el);
    if (el.shadowRoot) walk(el.shadowRoot, f);
  });
  walk(document, (el) => {
    if (el.tagName !== 'TABLE' && el.tagName !== 'CANVAS') return;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return;  // not shown (another page of a table, another view)
    const card = cardOf(el);
    const right = card ? card.getBoundingClientRect().right : win;
    if (r.right > right + 1) {
      const text = el.innerText.slice(0, 40).replace(/\s+/g, ' ');
      const what = el.tagName === 'TABLE' ? `a table ("${text}")` : 'a plot';
      const over = Math.round(r.right - right);
      problems.push(`${what} runs ${over} px past the right edge of its ${card ? 'card' : 'window'}`);
    }
  });
  const ctx = document.createElement('canvas').getContext('2d');
  const width = (text, style, size, font) => {
    ctx.font = `${style} ${size} ${font}`;
    return ctx.measureText(text).width;
  };
  const visit = (v) => {
    if (!v) return;
    const m = v.model;
    if (m && m.type === 'Figure' && v.canvas_view && v.canvas_view.bbox.width > 0) {
      const frame = v.frame.bbox, canvas = v.canvas_view.bbox;
      const name = m.title && m.title.text ? m.title.text : '(untitled)';
      for (const [side, axes] of [['y', [...m.left, ...m.right]], ['x', [...m.below, ...m.above]]]) {
        for (const a of axes) {
          if (!a.visible || !a.axis_label) continue;
          const label = a.axis_label;
          const w = width(label, a.axis_label_text_font_style, a.axis_label_text_font_size,
                          a.axis_label_text_font);
          const centre = side === 'y' ? frame.y + frame.height / 2 : frame.x + frame.width / 2;
          const room = side === 'y' ? canvas.height : canvas.width;
          if (centre - w / 2 < 0 || centre + w / 2 > room) {
            problems.push(`plot "${name}": its ${side} axis label "${label}" (${Math.round(w)} px) ` +
                          `is cut off (${Math.round(room)} px of canvas)`);
          }
        }
      }
      const t = m.title;
      if (t && t.text && t.visible) {
        const w = width(t.text, t.text_font_style, t.text_font_size, t.text_font);
        if (frame.x + w > canvas.width) {
          problems.push(`plot "${name}": its title (${Math.round(w)} px) is cut off ` +
                        `(${Math.round(canvas.width - frame.x)} px from the frame to the canvas edge)`);
        }
      }
    }
    (v.child_views || []).forEach(visit);
  };
  if (window.Bokeh) [...Bokeh.index.roots].forEach(visit);
  return JSON.stringify(problems);
})()
"""


def find_chromium() -> str | None:
    """The Chromium executable on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What :func:`check_page` saw."""

    canvases: int
    roots: int
    bokeh_loaded: bool
    slider_changes_plot: bool | None
    """Moving the first slider changed the plotted data (``None``: the page has no slider)."""
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    layout_problems: list[str] = field(default_factory=list)
    """Sideways scrolling, tables and plots wider than their card, cut-off labels (:data:`LAYOUT_JS`)."""
    evaluated: list[Any] = field(default_factory=list)
    """What the ``evaluate`` expressions of :func:`check_page` returned (JSON text, parsed)."""
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, executable: str, profile: Path, width: int, height: int) -> None:
        self._to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, self._from_chrome_w = os.pipe()
        # Chromium expects its command pipe at fd 3 and its reply pipe at fd 4.
        self.proc = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=self._dup_fds,
        )
        os.close(self._to_chrome_r)
        os.close(self._from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _dup_fds(self) -> None:
        os.dup2(self._to_chrome_r, 3)
        os.dup2(self._from_chrome_w, 4)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome_r], [], [], left)[0]:
                raise TimeoutError(f"no reply from Chromium in {PATIENCE_S:.0f} s")
            chunk = os.read(self._from_chrome_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = PATIENCE_S,
    ) -> dict[str, Any]:
        msg_id = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})  # type: ignore[no-any-return]
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_chrome_w)
            os.close(self._from_chrome_r)


def check_page(
    html: Path,
    *,
    executable: str,
    width: int = 1440,
    height: int = 1000,
    evaluate: tuple[str, ...] = (),
) -> PageCheck:
    """Open ``html`` in headless Chromium and report what rendered and what went wrong; ``evaluate``:
    JavaScript expressions returning JSON text, run in order once the page is drawn and checked."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        pipe = _Pipe(executable, Path(profile), width, height)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=PATIENCE_S)
            state = _wait_until_drawn(pipe, session)
            metrics = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = pipe.call(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": metrics["height"], "scale": 1},
                },
                session=session,
            )
            layout = pipe.call(
                "Runtime.evaluate", {"expression": LAYOUT_JS, "returnByValue": True}, session=session
            )
            moved = pipe.call(
                "Runtime.evaluate",
                {"expression": _SLIDER_JS, "awaitPromise": True, "returnByValue": True},
                session=session,
            )
            evaluated = [
                json.loads(
                    pipe.call("Runtime.evaluate", {"expression": js, "returnByValue": True}, session=session)[
                        "result"
                    ]["value"]
                )
                for js in evaluate
            ]
            check = PageCheck(
                canvases=state["canvases"],
                roots=state["roots"],
                bokeh_loaded=state["bokeh"],
                slider_changes_plot=json.loads(moved["result"]["value"]),
                layout_problems=json.loads(layout["result"]["value"]),
                evaluated=evaluated,
                screenshot=base64.b64decode(shot["data"]),
            )
            _collect_events(pipe.events, check)
        finally:
            pipe.close()
    return check


def _evaluate(pipe: _Pipe, session: str, expression: str) -> Any:
    res = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    return res["result"]["value"]


def _wait_until_drawn(pipe: _Pipe, session: str) -> dict[str, Any]:
    """The page's counts once Bokeh has built and rendered every view (it does so after the load event);
    if it never gets there, the counts after :data:`PATIENCE_S` (the test then says what is missing)."""
    deadline = time.monotonic() + PATIENCE_S
    while not _evaluate(pipe, session, _READY_JS) and time.monotonic() < deadline:
        time.sleep(0.1)
    return json.loads(_evaluate(pipe, session, _COUNT_JS))  # type: ignore[no-any-return]


def _collect_events(events: list[dict[str, Any]], check: PageCheck) -> None:
    urls = {
        ev["params"]["requestId"]: ev["params"]["request"]["url"]
        for ev in events
        if ev.get("method") == "Network.requestWillBeSent"
    }
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.exceptions.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            check.console_errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
        elif method == "Network.loadingFailed":
            check.failed_loads.append(f"{urls.get(params['requestId'], '?')}: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                check.external_requests.append(url)
