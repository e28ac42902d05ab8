"""``sae-store explore`` as a command: what it prints, and refusals of a taken port."""

from __future__ import annotations

import socket
import urllib.request

import pandas as pd
import panel as pn
import pytest

from sae_store.explore import Explorer, build_page
from sae_store.explore.app import access_lines, growth_notice
from sae_store.extract.append import append_samples
from sae_store.store import ActivationStore
from sae_store_cli.main import main
from tests.report.synthetic import make_store

from .pages import page_text, walk
from .server import running_explorer


def test_port_in_use_is_one_clear_error(full_store: ActivationStore, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["explore", str(full_store.path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"sae-store explore: error: cannot listen on 127.0.0.1:{port}")
    assert err[0].endswith("pick a free port with --port")


def test_localhost_prints_an_ssh_tunnel_other_addresses_a_warning():
    local = access_lines("127.0.0.1", 5006)
    assert local[0] == "sae-store explore: serving on http://127.0.0.1:5006/"
    assert local[1].startswith("from your laptop: ssh -N -L 5006:localhost:5006 ")
    remote = access_lines("0.0.0.0", 5006)
    assert remote[1].startswith("warning: listening on 0.0.0.0, not only on this machine")
    assert not any("ssh" in line for line in remote)


def test_server_answers_pages(full_store: ActivationStore):
    with running_explorer(full_store.path) as (url, _):
        with urllib.request.urlopen(url + "?page=feature&layer=1&feature=4", timeout=60) as r:
            body = r.read().decode()
        assert r.status == 200 and "bokeh" in body.lower()


def test_appended_store_keeps_serving_what_it_opened(tmp_path):
    store = make_store(tmp_path / "store.zarr", n_samples=16, written_layers=1)
    explorer = Explorer(store.path)
    opened = explorer.current()
    assert growth_notice(opened) == ""
    more = pd.DataFrame(
        {
            "sample_id": [f"new{i}" for i in range(8)],
            "image": [f"img{i:04d}.png" for i in range(8)],
            "image_path": [str(tmp_path / "images" / f"img{i:04d}.png") for i in range(8)],
            "gender": ["male"] * 8,
            "en_caption": ["A man."] * 8,
            "ar_caption": ["رجل."] * 8,
        }
    )
    append_samples(store.path, more)
    # the page that is open keeps its data and says that a reload shows the new samples
    assert opened.n_samples == 16 and len(opened.labels.sample) == 16
    assert "The store now holds 24 samples; this page shows the 16" in growth_notice(opened)
    assert "Reload the page to see the new samples" in growth_notice(opened)
    # a new page view (a reload) opens the grown store
    reloaded = explorer.current()
    assert reloaded.n_samples == 24 and growth_notice(reloaded) == ""
    assert "new3" in page_text(build_page(explorer, {"page": "sample", "id": "new3"}))


@pytest.mark.parametrize("flag", ["--results", "--saes"])
def test_a_folder_option_that_is_not_a_folder(full_store: ActivationStore, tmp_path, capsys, flag):
    bad = tmp_path / "missing"
    assert main(["explore", str(full_store.path), flag, str(bad), "--port", "0"]) == 2
    assert f"{flag} {str(bad)!r} is not a folder" in capsys.readouterr().err


def test_a_model_option_that_is_no_model_folder_is_refused_at_startup(
    full_store: ActivationStore, tmp_path, capsys
):
    bad = tmp_path / "missing"
    assert main(["explore", str(full_store.path), "--model", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"sae-store explore: error: Model folder {str(bad)!r} does not exist or is not a folder"
    )


def test_the_model_option_decodes_tokens_and_draws_the_test_box(full_store: ActivationStore, tiny_model_dir):
    # the synthetic store records a model folder that is not here: no token text, no test box
    args = {"page": "feature", "layer": "2", "feature": "3"}
    recorded = Explorer(full_store.path)
    assert recorded.current().decode_token is None
    assert "restart the explorer with --model DIR" in page_text(build_page(recorded, args))
    given = Explorer(full_store.path, model=tiny_model_dir)
    decode = given.current().decode_token
    assert decode is not None and decode(2) == "<bos>"
    assert decode(-3) == "<id -3>" and decode(10**7) == "<id 10000000>"  # not of this vocabulary
    buttons = [w.label for w in walk(build_page(given, args)) if isinstance(w, pn.widgets.Button)]
    assert buttons == ["Run the model"]
