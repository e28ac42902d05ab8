"""``sae-store train`` and ``sae-store encode``: one SAE per layer, then features back into the store."""

from __future__ import annotations

import argparse
import os

from sae_store.errors import ConfigError

from .options import add_languages, add_layers, add_overwrite


def _layer_from_env() -> int | None:
    value = os.environ.get("SLURM_ARRAY_TASK_ID")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"SLURM_ARRAY_TASK_ID must be an integer layer, got {value!r}") from e


def _train(args: argparse.Namespace) -> int:
    # Imported here so that `sae-store --help` does not pay for importing torch.
    from sae_store.extract.config import parse_languages
    from sae_store.store import open_store
    from sae_store.store.usage import parse_size
    from sae_store.train.config import DataConfig, RunConfig, SaeConfig, TrainerConfig, parse_roles
    from sae_store.train.run import train_layer

    layer = args.layer if args.layer is not None else _layer_from_env()
    if layer is None:
        raise ConfigError("no layer given: pass --layer L (or run as a SLURM array task, one task per layer)")
    store = open_store(args.store)
    config = RunConfig(
        sae=SaeConfig(
            architecture=args.arch, expansion=args.expansion, d_sae=args.d_sae, k=args.k,
            l1_coefficient=args.l1_coefficient, l0_coefficient=args.l0_coefficient,
            sparsity_warmup_steps=args.sparsity_warmup_steps,
        ),
        data=DataConfig(
            layer=layer,
            languages=parse_languages(args.languages, store.layout.languages) if args.languages else (),
            roles=parse_roles(args.roles), batch_size=args.batch_size, val_fraction=args.val_fraction,
            memory_budget=parse_size(args.memory_budget), read_threads=args.read_threads, seed=args.seed,
        ),
        trainer=TrainerConfig(
            steps=args.steps, lr=args.lr, lr_warmup_steps=min(args.lr_warmup_steps, args.steps),
            log_every=args.log_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
            device=args.device,
        ),
    )  # fmt: skip
    result = train_layer(
        store, config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress
    )
    if result.skipped:
        print(f"layer {layer}: {result.folder} already holds a trained SAE; nothing to do")
        return 0
    m = result.metrics
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    print(
        f"layer {layer}: saved {result.folder}{resumed}; held-out: explained variance "
        f"{m.get('explained_variance', float('nan')):.3f}, L0 {m.get('l0', float('nan')):.1f}, "
        f"dead {m.get('dead_fraction', float('nan')):.1%} over {m.get('tokens', 0)} tokens"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from sae_store.extract.config import parse_layers, slurm_task
    from sae_store.store import open_store
    from sae_store.train.config import EncodeConfig, parse_roles
    from sae_store.train.encode import encode_features, find_saes

    store = open_store(args.store)
    index, count = slurm_task()
    index = args.task_index if args.task_index is not None else index
    count = args.task_count if args.task_count is not None else count
    layers = list(parse_layers(args.layers, int(store.attrs["model"]["n_layers"]))) if args.layers else None
    config = EncodeConfig(roles=parse_roles(args.roles), batch_tokens=args.batch_tokens, device=args.device)
    result = encode_features(
        store,
        find_saes(args.saes, layers),
        config,
        task_index=index,
        task_count=count,
        restart=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"encoded {result.encoded} (layer, language, block) units into {store.path}/features "
        f"(layers {list(result.layers)}, task {index + 1}/{count}); {result.skipped} were already complete"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train one SAE on a layer of the store (saved as <out>/layer_<L>, SAELens layout)",
        description="Train a sparse autoencoder on one layer, streaming token vectors from the store. "
        "--layer defaults to $SLURM_ARRAY_TASK_ID (one array task per layer).",
    )  # fmt: skip
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--layer", type=int, help="decoder layer (default: $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--out", required=True, help="folder of SAEs; this layer's goes to <out>/layer_<L>")
    p.add_argument("--arch", default="topk", help="topk (default), batchtopk, relu or jumprelu")
    p.add_argument("--k", type=int, default=64, help="active latents per token (topk, batchtopk); default 64")
    p.add_argument("--expansion", type=int, default=8, help="d_sae = expansion x hidden size; default 8")
    p.add_argument("--d-sae", type=int, default=0, help="number of latents (overrides --expansion)")
    p.add_argument("--l1-coefficient", type=float, default=5.0, help="relu: L1 weight; default 5")
    p.add_argument("--l0-coefficient", type=float, default=1.0, help="jumprelu: L0 weight; default 1")
    p.add_argument("--sparsity-warmup-steps", type=int, default=0, help="relu/jumprelu: sparsity warm-up")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps; default 2000")
    p.add_argument("--batch-size", type=int, default=4096, help="token vectors per step; default 4096")
    p.add_argument("--lr", type=float, default=3e-4, help="peak Adam learning rate; default 3e-4")
    p.add_argument("--lr-warmup-steps", type=int, default=100, help="linear lr warm-up; default 100")
    p.add_argument(
        "--roles", default="image,text", help="token roles: image, text, special or all (image,text)"
    )
    add_languages(p, "languages to mix into one shared SAE", "all")
    p.add_argument("--val-fraction", type=float, default=0.1, help="samples held out for evaluation; 0.1")
    p.add_argument(
        "--memory-budget",
        default="2GiB",
        help="RAM for training data: loaded once if it fits, else streamed; default 2GiB",
    )
    p.add_argument("--read-threads", type=int, default=4, help="samples decoded at once when reading; 4")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, split and shuffling")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1); default cpu")
    p.add_argument("--log-every", type=int, default=50, help="steps between metrics records; default 50")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (0: none)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the layer's checkpoint (do nothing if it is already trained)",
    )
    p.add_argument("--overwrite", action="store_true", help="discard the layer's folder and train again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "encode", help="encode activations with the trained SAEs into the store's features group",
        description="Per (layer, language, sample, feature): mean and max of the latent over the sample's "
        "tokens of the chosen roles and the fraction of them where it is active. Resumable; array tasks "
        "(--task-index/--task-count, default from SLURM) own contiguous runs of shard blocks.",
    )  # fmt: skip
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--saes", required=True, metavar="DIR", help="folder holding layer_<L> SAE folders")
    add_layers(p, "layers to encode", "every layer with an SAE")
    p.add_argument("--roles", default="image,text", help="token roles summarised; default image,text")
    p.add_argument("--task-index", type=int, help="this array task (default: from $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--task-count", type=int, help="number of array tasks (default: $SLURM_ARRAY_TASK_COUNT)")
    p.add_argument("--batch-tokens", type=int, default=8192, help="token vectors encoded at once; 8192")
    p.add_argument("--device", default="cpu", help="torch device; default cpu")
    add_overwrite(
        p, "delete the features group first (single process; discards encoded features)", old=("--restart",)
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_encode)
