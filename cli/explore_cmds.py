"""``sae-store explore``: browse a store's features, samples and results in a web browser."""

from __future__ import annotations

import argparse
from typing import Any

from sae_store.models import ModelRunConfig

from .options import add_model, add_results, add_saes, add_settings, add_store, build
from .parser import add_command, port


def _explore(args: argparse.Namespace) -> int:
    """Serve a feature browser on the store (overview, feature and sample pages).

    Serve an interactive browser of the store's features, samples and results (Panel on a Bokeh server). It
    reads the store lazily and prints the URL and the ssh -L line to open it from a laptop. Each feature page
    has a test box that runs the model and the layer's SAE on an image (stored or uploaded) and a caption;
    the model is loaded on its first run. Stop it with Ctrl-C.
    """
    # imported here: Panel, HoloViews and Bokeh take seconds to import
    from sae_store.explore import Explorer, check_port, serve

    check_port(args.host, args.port)  # before opening the store: a taken port fails fast
    if args.model:
        from sae_store.models.loader import check_model_dir

        check_model_dir(args.model)  # its weights are loaded on the test box's first run
    explorer = Explorer(
        args.store,
        model=args.model,
        model_config=build(args, ModelRunConfig),
        saes_dir=args.saes,
        results_dir=args.results,
    )
    serve(explorer, host=args.host, port=args.port)
    return 0


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "explore", _explore, json=False)
    add_store(p)
    add_saes(p, required=False)
    add_results(p, "folder of analysis and intervention JSON results")
    add_model(
        p,
        help="model folder the feature pages' test box runs (loaded on its first run) and whose tokenizer "
        "decodes tokens",
    )
    add_settings(p, ModelRunConfig, title="the test box's model runs")
    p.add_argument("--port", type=port, default=5006, metavar="N", help="port to listen on (default: 5006)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to listen on; any but localhost serves the store to the network, with a warning "
        "(default: 127.0.0.1)",
    )


COMMANDS = {"explore": _add}
