"""Where work runs: the torch device to use and the CPU cores this process may use.

torch is imported only when a device is resolved, so this base module stays cheap to import.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from sae_store.configbase import SettingError, setting
from sae_store.errors import SaeStoreError, shown_value

if TYPE_CHECKING:
    import torch


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a device.

    Raises
    ------
    SaeStoreError
        If the name is not a device, or CUDA is requested but not available.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise SaeStoreError(f"Invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise SaeStoreError(
                f"Device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                "torch.cuda.is_available() is False): use --device auto (a GPU when there is one, else the "
                "CPU) or --device cpu, or run on a GPU node with a CUDA build of torch."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise SaeStoreError(
                f"Device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    return resolved


#: The long names of the precisions, read wherever one is given (``--dtype``, ``--precision``): the
#: short ones (``bf16``, ``fp32``) are what help texts, configs and the store show.
DTYPE_ALIASES = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16", "half": "fp16"}


def _device_name(text: str) -> str:
    if not isinstance(text, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text.strip()):
        raise SettingError("device", f"must be auto, cpu, cuda or cuda:N, got {shown_value(text)}")
    return text.strip()


def device_setting() -> Any:
    """The one declaration of a torch device option (``--device auto|cpu|cuda[:N]``)."""
    return setting(
        "auto",
        help="torch device: auto (a GPU if there is one), cpu, cuda or cuda:N",
        metavar="DEVICE",
        parse=_device_name,
    )
