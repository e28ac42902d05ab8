"""The explorer's web app: one Bokeh server session per page view, pages chosen by the URL.

Every page is an ordinary URL (``?page=feature&layer=17&feature=123&language=ar``), so links,
the back button, bookmarks and the volcano's click-through all work without server state. A
session holds only the page it shows; sessions of pages left behind are discarded after
:data:`SESSION_LIFETIME_MS`, which keeps the server's memory bounded while browsing.
"""

from __future__ import annotations

import getpass
import html
import logging
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import holoviews as hv
import panel as pn

from sae_store.errors import SaeStoreError
from sae_store.explore.data import ExploreData
from sae_store.explore.feature import feature_page
from sae_store.explore.layout import error_box, header, html_pane, link, replace_address, url
from sae_store.explore.overview import default_layer, overview_page
from sae_store.explore.sample import sample_page
from sae_store.explore.search import explanation_hits, search_page, token_hits
from sae_store.explore.tryout import LiveModel
from sae_store.models import ModelRunConfig

log = logging.getLogger(__name__)

#: A page's session is dropped this long after its browser tab left it.
SESSION_LIFETIME_MS = 5_000
#: How often an open page checks whether samples were appended to the store.
STORE_CHECK_MS = 5_000
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class PortInUseError(SaeStoreError):
    """The port asked for is taken."""


class Explorer:
    """The store snapshot being served; re-opened for new page views once samples were appended."""

    def __init__(
        self,
        store_path: str | Path,
        *,
        model: str | Path | None = None,
        model_config: ModelRunConfig | None = None,
        **options: Any,
    ) -> None:
        """``model``: the model folder the feature pages' test box runs and whose tokenizer decodes
        tokens (default: the store's), with ``model_config``; ``options``: :class:`ExploreData`'s
        (``saes_dir``, ``results_dir``)."""
        self.live = LiveModel(store_path, model, model_config or ModelRunConfig())
        self._open = lambda: ExploreData(store_path, model_dir=model, **options)
        self._data = self._open()
        self._lock = threading.Lock()

    def current(self) -> ExploreData:
        """The data for a new page view: the opened snapshot, or a fresh one if the store grew."""
        with self._lock:
            if self._data.stored_n_samples() != self._data.n_samples:
                try:
                    self._data = self._open()
                except (SaeStoreError, OSError) as e:  # an append still in progress: keep what works
                    log.info("store changed but cannot be reopened yet (%s); serving the opened data", e)
            return self._data


def growth_notice(data: ExploreData) -> str:
    """A notice when the store on disk holds more samples than the page shows ("" otherwise)."""
    now = data.stored_n_samples()
    if now == data.n_samples:
        return ""
    return (
        f'<div class="notice">The store now holds {now} samples; this page shows the {data.n_samples} it '
        "held when it was opened. Reload the page to see the new samples.</div>"
    )


def _int(args: Mapping[str, str], key: str) -> int | None:
    value = args.get(key)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise SaeStoreError(f"{key}={value!r} in the address is not a whole number") from None


class SearchMissError(SaeStoreError):
    """A search box entry that names no feature and no sample; ``suggestions`` are sample ids alike."""

    def __init__(self, message: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.suggestions = suggestions


_FORMS = "a feature id (123), LAYER:FEATURE (17:123), a sample id, words of an explanation or a token"
_NUMBER = re.compile(r"-?\d+")


def resolve_search(
    data: ExploreData, query: str, layer: int | None, language: str | None = None
) -> dict[str, Any]:
    """The page a search box entry opens: ``123`` (a feature of the current layer), ``17:123``
    (layer 17, feature 123), a sample id (ignoring case when only one id matches), else the search
    results (``found``) of features across layers whose explanation holds the words or whose logit lens
    promotes the token (explanations ranked by detection score in ``language``).

    Raises
    ------
    SaeStoreError
        The entry is empty, or looks like LAYER:FEATURE but is not; an out-of-range feature or layer
        (:class:`FeatureNotFoundError`); :class:`SearchMissError` when it names nothing.
    """
    q = query.strip()
    if not q:
        raise SaeStoreError(f"the search box is empty: type {_FORMS}")
    if q in data.labels.sample:
        return {"page": "sample", "id": q}
    if ":" in q:
        la, _, f = (p.strip() for p in q.partition(":"))
        if not (_NUMBER.fullmatch(la) and _NUMBER.fullmatch(f)):
            raise SaeStoreError(
                f"{q!r} is not LAYER:FEATURE: both parts must be whole numbers, e.g. {data.layers[-1]}:0"
            )
        data.check_feature(int(la), int(f))
        return {"page": "feature", "layer": int(la), "feature": int(f)}
    if _NUMBER.fullmatch(q):
        current = layer if layer is not None else default_layer(data)
        data.check_feature(current, int(q))
        return {"page": "feature", "layer": current, "feature": int(q)}
    found = data.find_sample(q)
    if found is not None:
        return {"page": "sample", "id": found}
    hits = explanation_hits(data.explanations, q, language or data.languages[0]), token_hits(data, q)
    if any(hits):
        return {"page": "search", "q": q, "found": hits}
    close = data.similar_samples(q)
    hint = (
        f"did you mean {' or '.join(map(repr, close))}?"
        if close
        else f"sample ids look like {', '.join(map(repr, data.labels.sample[:3]))}"
    )
    raise SearchMissError(
        f"no sample {q!r} in the store, no explanation or logit-lens token matches it, and it is not a "
        f"feature id (a whole number) or LAYER:FEATURE; {hint}",
        close,
    )


def build_page(explorer: Explorer, args: Mapping[str, str]) -> pn.Column:
    """The page the URL's query arguments ask for (errors in them become a message on the page)."""
    data = explorer.current()
    language = args.get("language") or data.languages[0]
    params: dict[str, Any] = {"language": language}
    searched, query = args.get("page") == "search", ""
    try:
        data.store.language_index(language)
        page = args.get("page") or "overview"
        layer = _int(args, "layer")
        if searched:
            params.update(resolve_search(data, args.get("q", ""), layer, language))
            page, layer = params.pop("page"), params.get("layer")
        found = params.pop("found", None)
        if page == "overview":
            layer = layer if layer is not None else default_layer(data)
            data.store.layer_index(layer)
            params["layer"] = layer
            title, body = f"sae-store explore: {data.store.path.name}", overview_page(data, layer, language)
        elif page == "feature":
            feature = _int(args, "feature") if "feature" not in params else params["feature"]
            if layer is None or feature is None:
                raise SaeStoreError("a feature page needs layer= and feature= in the address")
            params.update(layer=layer, feature=feature)
            title, body = (
                f"Layer {layer}, feature {feature}",
                feature_page(data, layer, feature, language, explorer.live),
            )
        elif page == "sample":
            sid = str(params.get("id") or args.get("id", ""))
            feature = _int(args, "feature")
            params.update(id=sid, layer=layer, feature=feature)
            title, body = f"Sample {sid}", sample_page(data, sid, language, layer, feature)
        elif page == "search" and found is not None:  # the address, with the query, is shareable
            query = params["q"]
            title, body = f"Search: {query}", search_page(data, query, language, found)
        else:
            raise SaeStoreError(f"no page {page!r}; pages are overview, feature, sample and search")
        if searched and page != "search":  # the address bar shows the page found, as a link to it would
            found = {k: v for k, v in params.items() if k != "language"}
            body = [replace_address(url(page, **found, language=params["language"])), *body]
    except Exception as e:
        params = {"language": language if language in data.languages else data.languages[0]}
        said, query = str(e), ""
        if isinstance(e, SaeStoreError):  # a bad address or entry: the search box keeps it, to be corrected
            query = args.get("q", "") if searched else ""
        else:  # a bug: the page says so (a blank page would not), the log has the traceback
            log.exception("page %s failed", dict(args))
            said = (
                f"this page failed ({type(e).__name__}: {e}); the explorer's log has the traceback: report it"
            )
        suggestions = e.suggestions if isinstance(e, SearchMissError) else []
        links = [link(sid, "sample", id=sid, language=params["language"]) for sid in suggestions]
        page, title, body = "overview", "sae-store explore", [error_box(said, links)]
    notice = html_pane(growth_notice(data))
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.add_periodic_callback(lambda: setattr(notice, "object", growth_notice(data)), STORE_CHECK_MS)
    top = header(title, page, params, data.languages, params["language"], query=query)
    return pn.Column(top, notice, *body, sizing_mode="stretch_width")


def _session_args() -> dict[str, str]:
    raw = pn.state.session_args if pn.state.curdoc is not None else {}
    return {k: v[0].decode("utf-8", "replace") for k, v in (raw or {}).items() if v}


def check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, naming it and how to pick another."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({e.strerror}); another program (maybe another explorer) "
                "uses it: pick a free port with --port"
            ) from None


def access_lines(host: str, port: int) -> list[str]:
    """What to print: the URL, and the ``ssh -L`` line to reach it from a laptop."""
    lines = [f"sae-store explore: serving on http://{host}:{port}/"]
    if host in LOCAL_HOSTS:
        lines.append(
            f"from your laptop: ssh -N -L {port}:localhost:{port} {getpass.getuser()}@{socket.gethostname()}"
            f"  then open http://localhost:{port}/"
        )
    else:
        lines.append(
            f"warning: listening on {host}, not only on this machine: anyone who can reach {host}:{port} "
            "can read this store through the explorer (there is no login); use the default "
            "--host 127.0.0.1 and an SSH tunnel unless the network is trusted"
        )
    return lines


def _warm(explorer: Explorer) -> None:
    # the first page would otherwise pay for the tokenizer, an SAE and Bokeh's plot classes
    data = explorer.current()
    data.warm()
    layer = default_layer(data)
    for args in ({"layer": str(layer)}, {"page": "feature", "layer": str(layer), "feature": "0"}):
        build_page(explorer, args).get_root()


def serve(explorer: Explorer, *, host: str = "127.0.0.1", port: int = 5006) -> None:
    """Serve the explorer until interrupted (prints the URL and how to reach it first)."""
    check_port(host, port)
    hv.extension("bokeh", logo=False)
    pn.extension(inline=True)
    _warm(explorer)
    origins = [f"{h}:{port}" for h in ("localhost", "127.0.0.1", html.escape(host))]
    for line in access_lines(host, port):
        print(line, flush=True)
    pn.serve(
        lambda: build_page(explorer, _session_args()),
        port=port,
        address=host,
        websocket_origin=origins,
        show=False,
        title="sae-store explore",
        verbose=False,
        unused_session_lifetime_milliseconds=SESSION_LIFETIME_MS,
        check_unused_sessions_milliseconds=SESSION_LIFETIME_MS,
    )
