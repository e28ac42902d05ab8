"""Drive the running explorer in headless Chromium (DevTools pipe, as the report's browser check).

One browser tab goes from page to page like a person would: open a URL, click a volcano point,
click a link. Each step reports how long the page took to become interactive (its plots drawn and
its images decoded), and the tab's console errors, exceptions and requests are collected.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sae_store.explore.tryout import RUNNING
from tests.report.browser import LAYOUT_JS, PageCheck, _collect_events, _Pipe

# The feature page's highlighted tokens and section headings, inside every shadow root.
_PANELS_JS = """
(() => {
  const tokens = [], directions = [], headings = [];
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.classList && el.classList.contains('tok')) tokens.push(el.title);
    if (el.classList && el.classList.contains('tokens')) directions.push(el.getAttribute('dir'));
    if (/^H[1-4]$/.test(el.tagName)) headings.push(el.textContent);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return JSON.stringify({tokens, directions, headings});
})()
"""

# Canvases drawn and images decoded, inside every shadow root (Panel and Bokeh use shadow DOM).
_STATE_JS = """
(() => {
  let canvases = 0, images = 0, broken = 0;
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.tagName === 'CANVAS' && el.width > 0) canvases++;
    if (el.tagName === 'IMG') { if (el.complete && el.naturalWidth > 0) images++; else broken++; }
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return JSON.stringify({canvases, images, broken, href: location.href,
                         bokeh: typeof window.Bokeh !== 'undefined' && Bokeh.index.roots.length > 0});
})()
"""

# The screen position of a volcano point that a click hits alone: the highest one (the most
# significant feature, where a legend inside the axes used to sit) at least a marker's width from any
# other, else the one farthest from any other.
_POINT_JS = """
(() => {
  const found = [];
  const visit = (v) => {
    if (!v) return;
    const title = v.model && v.model.type === 'Figure' && v.model.title ? v.model.title.text : '';
    if (title.includes('%s')) found.push(v);
    (v.child_views || []).forEach(visit);
  };
  [...Bokeh.index.roots].forEach(visit);
  const view = found[0];
  view.canvas_view.el.scrollIntoView();
  const renderer = view.model.renderers.find((r) => r.data_source && r.data_source.data.feature);
  const data = renderer.data_source.data;
  const xs = [...data[renderer.glyph.x.field]], ys = [...data[renderer.glyph.y.field]];
  const sx = xs.map((x) => view.frame.x_scale.compute(x)), sy = ys.map((y) => view.frame.y_scale.compute(y));
  const gaps = xs.map((_, i) => Math.min(...xs.map((__, j) => (
    j === i ? Infinity : Math.hypot(sx[i] - sx[j], sy[i] - sy[j])))));
  let best = gaps.indexOf(Math.max(...gaps));
  for (let i = 0; i < xs.length; i++) {
    if (gaps[i] >= 8 && (gaps[best] < 8 || sy[i] < sy[best])) best = i;  // screen y grows downwards
  }
  const rect = view.canvas_view.el.getBoundingClientRect();
  return JSON.stringify({x: rect.x + sx[best], y: rect.y + sy[best], feature: Number(data.feature[best])});
})()
"""

# Clicks the first link whose address contains the given text (searching shadow roots too).
_LINK_JS = """
(() => {
  let hit = null;
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (!hit && el.tagName === 'A' && el.getAttribute('href').includes(%s)) hit = el;
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  if (hit) hit.click();
  return hit ? hit.getAttribute('href') : null;
})()
"""

# Finds the first element for which the JS predicate %s holds (searching shadow roots too) and evaluates
# %s with it as ``hit`` (null when there is none).
_FIND_JS = """
(() => {
  let hit = null;
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (!hit && (%s)) hit = el;
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return hit === null ? null : %s;
})()
"""
_SEARCH_BOX = "el.tagName === 'INPUT' && (el.placeholder || '').includes('sample id')"
_FILE_INPUT = "el.tagName === 'INPUT' && el.type === 'file'"
_CAPTION_BOX = "el.tagName === 'TEXTAREA'"
_TRYOUT_RESULT = "el.classList.contains('tryout')"


class Browser:
    """One headless Chromium tab."""

    def __init__(self, executable: str, *, width: int = 1400, height: int = 1000) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self.width = width
        self.pipe = _Pipe(executable, Path(self._profile.name), width, height)
        target = self.pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network", "DOM"):
            self.pipe.call(f"{domain}.enable", session=self.session)

    def evaluate(self, expression: str) -> Any:
        res = self.pipe.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session
        )
        return res["result"].get("value")

    def state(self) -> dict[str, Any]:
        return json.loads(self.evaluate(_STATE_JS))  # type: ignore[no-any-return]

    def wait_ready(
        self, *, canvases: int, images: int, since_href: str | None = None, timeout: float = 30
    ) -> float:
        """Seconds until the page shows at least ``canvases`` drawn canvases and ``images`` images, and
        every image on it is decoded."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                s = self.state()
            except (RuntimeError, TypeError, json.JSONDecodeError):  # navigation in progress
                s = None
            if (
                s is not None
                and s["href"] != since_href
                and s["bokeh"]
                and s["canvases"] >= canvases
                and s["images"] >= images
                and s["broken"] == 0
            ):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"page not ready after {timeout} s: {s}")

    def open(self, url: str, *, canvases: int, images: int = 0) -> float:
        self.pipe.call("Page.navigate", {"url": url}, session=self.session)
        return self.wait_ready(canvases=canvases, images=images)

    def click_point(self, title: str) -> tuple[int, str]:
        """Click the highest point, alone under the pointer, of the figure whose title contains ``title``;
        returns its feature and the page left."""
        where = json.loads(self.evaluate(_POINT_JS % title))
        href = self.state()["href"]
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": where["x"], "y": where["y"], "button": "left", "clickCount": 1}
            self.pipe.call("Input.dispatchMouseEvent", params, session=self.session)
        return int(where["feature"]), href

    def click_link(self, href_part: str) -> tuple[str, str]:
        """Click the first link whose address contains ``href_part``; returns it and the page left."""
        before = self.state()["href"]
        hit = self.evaluate(_LINK_JS % json.dumps(href_part))
        if hit is None:
            raise AssertionError(f"no link containing {href_part!r} on {before}")
        return str(hit), before

    def search(self, text: str) -> str:
        """Type ``text`` into the search box and press Enter; returns the page left."""
        before = self.state()["href"]
        if not self.evaluate(_FIND_JS % (_SEARCH_BOX, "(hit.focus(), true)")):
            raise AssertionError(f"no search box on {before}")
        self.pipe.call("Input.insertText", {"text": text}, session=self.session)
        for kind in ("keyDown", "keyUp"):
            key = {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
            self.pipe.call(
                "Input.dispatchKeyEvent", {**key, "text": "\r"} if kind == "keyDown" else key, self.session
            )
        return str(before)

    def panels(self) -> dict[str, Any]:
        """What the feature page's panels show: its highlighted tokens (count, hover titles, text
        direction of their blocks) and the headings of its sections."""
        return json.loads(self.evaluate(_PANELS_JS))  # type: ignore[no-any-return]

    def search_box(self) -> str:
        """The text in the search box."""
        return str(self.evaluate(_FIND_JS % (_SEARCH_BOX, "hit.value")))

    def choose_file(self, path: Path) -> None:
        """Choose ``path`` in the page's file input, as a person picking it in the file dialog, and wait
        until it is sent (or refused)."""
        res = self.pipe.call(
            "Runtime.evaluate", {"expression": _FIND_JS % (_FILE_INPUT, "hit")}, self.session
        )
        object_id = res["result"].get("objectId")
        if object_id is None:
            raise AssertionError("no file input on the page")
        self.pipe.call("DOM.setFileInputFiles", {"files": [str(path)], "objectId": object_id}, self.session)
        t0 = time.monotonic()  # until the file is read and sent (or refused), as its status line says
        while time.monotonic() - t0 < 30:
            status = str(
                self.evaluate(_FIND_JS % ("el.classList.contains('upload-status')", "hit.textContent"))
            )
            if status.endswith(")") and path.name in status:
                return
            time.sleep(0.05)
        raise TimeoutError(f"the file input still says {status!r}")

    def type_caption(self, text: str) -> None:
        """Type ``text`` into the page's text area (the test box's caption)."""
        if not self.evaluate(_FIND_JS % (_CAPTION_BOX, "(hit.focus(), hit.select(), true)")):
            raise AssertionError("no text area on the page")
        self.pipe.call("Input.insertText", {"text": text}, session=self.session)

    def click_button(self, label: str) -> None:
        """Click the first button whose text holds ``label``."""
        found = f"el.tagName === 'BUTTON' && el.textContent.includes({json.dumps(label)})"
        if not self.evaluate(_FIND_JS % (found, "(hit.click(), true)")):
            raise AssertionError(f"no button {label!r} on the page")

    def tryout_result(self, since: str = "", timeout: float = 60) -> dict[str, Any]:
        """The test box's result once it differs from ``since``: its text and tokens' hover titles."""
        texts = (
            "JSON.stringify({text: hit.textContent, "
            "tokens: [...hit.querySelectorAll('.tok')].map((t) => t.title)})"
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            got = self.evaluate(_FIND_JS % (_TRYOUT_RESULT, texts))
            if got is not None and json.loads(got)["text"] not in (since, RUNNING):
                return json.loads(got)  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise TimeoutError(f"no test box result after {timeout} s")

    def layout_problems(self) -> list[str]:
        """What :data:`tests.report.browser.LAYOUT_JS` finds on the page shown."""
        return json.loads(self.evaluate(LAYOUT_JS))  # type: ignore[no-any-return]

    def screenshot(self, path: Path) -> None:
        metrics = self.pipe.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": self.width, "height": min(metrics["height"], 4000), "scale": 1}
        shot = self.pipe.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=self.session,
            timeout=60,
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> PageCheck:
        """Exceptions, console errors, failed loads and requests that left the machine so far."""
        check = PageCheck(canvases=0, roots=0, bokeh_loaded=True, slider_changes_plot=None)
        _collect_events(self.pipe.events, check)
        check.external_requests = [
            u
            for u in check.external_requests
            if urlparse(u).hostname not in ("127.0.0.1", "localhost", "::1")
        ]
        return check

    def close(self) -> None:
        self.pipe.close()
        self._profile.cleanup()
