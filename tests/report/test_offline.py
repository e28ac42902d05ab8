"""report.html must load nothing from the network: CDN links become inline data."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import panel as pn
import pytest

from sae_store.report.html import external_references, make_offline

CDN = f"https://cdn.holoviz.org/panel/{pn.__version__}/dist"


def _decode(data_url: str) -> str:
    return base64.b64decode(data_url.split(",", 1)[1]).decode()


def test_panel_stylesheets_become_data_urls_with_their_own_assets_inlined():
    html = (
        '<head><link rel="icon" type="image/png" sizes="32x32" href="' + CDN + '/images/favicon.ico">\n'
        '<link rel="apple-touch-icon" href=""></head>'
        '{"name":"ImportedStyleSheet","attributes":{"url":"' + CDN + '/css/loading.css?v=1"}}'
        '{"name":"ImportedStyleSheet","attributes":{"url":"' + CDN + '/bundled/theme/default.css"}}'
    )
    assert len(external_references(html)) == 3
    out = make_offline(html)
    assert external_references(out) == [] and "cdn.holoviz.org" not in out and "favicon" not in out
    urls = re.findall(r'"url":"(data:text/css;base64,[^"]+)"', out)
    assert len(urls) == 2
    loading = _decode(urls[0])
    dist = Path(pn.__file__).parent / "dist"
    # the stylesheet is the installed file, with its relative spinner images turned into data URLs
    assert "../assets/" not in loading and "url('data:image/svg+xml;base64," in loading
    assert _decode(urls[1]) == (dist / "bundled" / "theme" / "default.css").read_text()


def test_unknown_external_file_is_refused():
    html = '<script src="https://example.org/x.js"></script>'
    with pytest.raises(
        RuntimeError, match=r"still load 1 files from the network: \['https://example.org/x.js'\]"
    ):
        make_offline(html)
