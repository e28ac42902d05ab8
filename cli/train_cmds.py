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


def _int_list(text: str | None) -> tuple[int, ...]:
    """``64,128,256`` -> (64, 128, 256); empty or None -> ()."""
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as e:
        raise ConfigError(f"expected comma-separated integers such as 256,512,1024, got {text!r}") from e


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
    warmup = args.lr_warmup_steps if args.lr_warmup_steps is not None else min(100, args.steps // 10)
    config = RunConfig(
        sae=SaeConfig(
            architecture=args.arch, expansion=args.expansion, d_sae=args.d_sae, k=args.k,
            aux_k=args.aux_k, aux_k_coefficient=args.aux_k_coefficient,
            decoder_init_norm=args.decoder_init_norm, matryoshka_widths=_int_list(args.matryoshka_widths),
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
            steps=args.steps, lr=args.lr, lr_warmup_steps=warmup, lr_decay_fraction=args.lr_decay_fraction,
            grad_clip=args.grad_clip, b_dec_init=args.b_dec_init, dead_window_tokens=args.dead_window_tokens,
            log_every=args.log_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
            device=args.device, autocast_bf16=args.autocast_bf16,
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
        f"never active on {m.get('tokens', 0)} held-out tokens {m.get('dead_fraction', float('nan')):.1%}; "
        f"dead in the last {m.get('dead_window_tokens', 0)} training tokens "
        f"{m.get('dead_fraction_train_window', float('nan')):.1%}"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from sae_store.extract.config import parse_layers, slurm_task
    from sae_store.store import open_store
    from sae_store.store.usage import parse_size
    from sae_store.train.config import EncodeConfig, parse_roles
    from sae_store.train.encode import encode_features
    from sae_store.train.pretrained import find_saes

    sae_memory = parse_size(args.sae_memory)
    store = open_store(args.store)
    index, count = slurm_task()
    index = args.task_index if args.task_index is not None else index
    count = args.task_count if args.task_count is not None else count
    layers = list(parse_layers(args.layers, int(store.attrs["model"]["n_layers"]))) if args.layers else None
    config = EncodeConfig(
        roles=parse_roles(args.roles),
        batch_tokens=args.batch_tokens,
        sae_memory=sae_memory,
        device=args.device,
    )
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


def _add_trainer_options(p: argparse.ArgumentParser) -> None:
    """The SAE and optimiser settings; defaults come from SaeConfig / TrainerConfig."""
    from sae_store.train.config import ARCHITECTURES, B_DEC_INITS, SaeConfig, TrainerConfig

    archs = ", ".join(ARCHITECTURES)
    sae, tr = SaeConfig(), TrainerConfig()
    add = p.add_argument
    add(
        "--arch",
        default=sae.architecture,
        metavar="ARCH",
        help=f"SAE architecture: {archs}",
    )
    add(
        "--k",
        type=int,
        default=sae.k,
        help="active latents per token (topk, batchtopk, matryoshka)",
    )
    add(
        "--expansion",
        type=int,
        default=sae.expansion,
        help="d_sae = expansion x hidden size",
    )
    add("--d-sae", type=int, default=0, help="number of latents (overrides --expansion); 0 = use --expansion")
    add(
        "--matryoshka-widths",
        metavar="W,W,...",
        help="matryoshka_batchtopk: nested widths ending at d_sae; default d_sae/16, /8, /4, /2, d_sae",
    )
    add("--steps", type=int, default=tr.steps, help="optimizer steps")
    add("--batch-size", type=int, default=4096, help="token vectors per step")
    add("--lr", type=float, default=tr.lr, help="peak Adam learning rate")
    add(
        "--lr-warmup-steps",
        type=int,
        help="linear lr warm-up from 0; default 100, or a tenth of --steps when that is less",
    )
    add(
        "--lr-decay-fraction",
        type=float,
        default=tr.lr_decay_fraction,
        help="final fraction of the steps over which the lr decays linearly to 0",
    )
    add(
        "--grad-clip",
        type=float,
        default=tr.grad_clip,
        help="max gradient norm (0: no clipping)",
    )
    add(
        "--b-dec-init",
        metavar="|".join(B_DEC_INITS),
        default=tr.b_dec_init,
        help="decoder bias at the start: the first batch's mean, or zeros (as SAELens)",
    )
    add(
        "--decoder-init-norm",
        type=float,
        default=sae.decoder_init_norm,
        help="decoder row norm at init (kept in training, folded to 1 on save); 0 = 1",
    )
    add("--aux-k", type=int, default=sae.aux_k, help="dead latents in the AuxK loss; 0 = hidden size / 2")
    add(
        "--aux-k-coefficient",
        type=float,
        default=sae.aux_k_coefficient,
        help="weight of the AuxK loss",
    )
    add(
        "--dead-window-tokens",
        type=int,
        default=tr.dead_window_tokens,
        help="latents silent this many training tokens are dead (AuxK)",
    )
    add(
        "--l1-coefficient",
        type=float,
        default=sae.l1_coefficient,
        help="relu: L1 weight",
    )
    add(
        "--l0-coefficient",
        type=float,
        default=sae.l0_coefficient,
        help="jumprelu: L0 weight",
    )
    add(
        "--sparsity-warmup-steps",
        type=int,
        default=sae.sparsity_warmup_steps,
        help="relu/jumprelu: sparsity warm-up steps",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    from sae_store.train.config import default_read_threads

    p = subparsers.add_parser(
        "train", help="train one SAE on a layer of the store (saved as <out>/layer_<L>, SAELens layout)",
        description="Train a sparse autoencoder on one layer, streaming token vectors from the store. "
        "--layer defaults to $SLURM_ARRAY_TASK_ID (one array task per layer).",
    )  # fmt: skip
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--layer", type=int, help="decoder layer (default: $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--out", required=True, help="folder of SAEs; this layer's goes to <out>/layer_<L>")
    _add_trainer_options(p)
    p.add_argument(
        "--roles", default="image,text", help="token roles: image, text, special or all (image,text)"
    )
    add_languages(p, "languages to mix into one shared SAE", "all")
    p.add_argument("--val-fraction", type=float, default=0.1, help="samples held out for evaluation")
    p.add_argument(
        "--memory-budget",
        default="2GiB",
        help="RAM for training data: loaded once if it fits, else streamed; default 2GiB",
    )
    p.add_argument(
        "--read-threads",
        type=int,
        default=default_read_threads(),
        help="samples decoded at once when reading; default: the cores, at most 8",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, split and shuffling")
    p.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA if available), cpu, cuda, cuda:1"
    )
    p.add_argument(
        "--autocast-bf16", action="store_true", help="on CUDA, forward pass under bfloat16 autocast"
    )
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
    p.add_argument(
        "--saes",
        required=True,
        metavar="DIR",
        help="folder of per-layer SAEs (layer_<L>/ from `train`, SAELens, sparsify layers.<L>/, Gemma Scope) "
        "or a pattern with {L}, e.g. 'gemma-scope-2/resid_post/layer_{L}_width_16k_l0_medium' (see README)",
    )
    add_layers(p, "layers to encode", "every layer with an SAE")
    p.add_argument("--roles", default="image,text", help="token roles summarised; default image,text")
    p.add_argument("--task-index", type=int, help="this array task (default: from $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--task-count", type=int, help="number of array tasks (default: $SLURM_ARRAY_TASK_COUNT)")
    p.add_argument("--batch-tokens", type=int, default=8192, help="token vectors encoded at once")
    p.add_argument(
        "--sae-memory",
        default="4GiB",
        help="memory for SAEs held at once: consecutive layers are grouped to fit it, and each block's "
        "summaries are written once per group; default 4GiB",
    )
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA if available), cpu, cuda")
    add_overwrite(
        p, "delete the features group first (single process; discards encoded features)", old=("--restart",)
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_encode)
