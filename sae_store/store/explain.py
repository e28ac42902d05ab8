"""One message for people from an operating-system or codec error, naming the file and what to do.

The command line passes every error that is not already a :class:`~sae_store.errors.SaeStoreError`
through :func:`explain_error`, so every command reports a read-only store, a full disk or a damaged
chunk the same way, and none of them shows a traceback for it.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import traceback
from pathlib import Path


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _owner(path: Path) -> str:
    """Who may write ``path`` (or its nearest existing folder): owner, group and mode."""
    for p in (path, *path.parents):
        try:
            st = p.stat()
        except OSError:
            continue
        return (
            f"{str(p)!r} belongs to user {_user(st.st_uid)!r} and group {_group(st.st_gid)!r} "
            f"(mode {stat.filemode(st.st_mode)})"
        )
    return f"{str(path)!r} cannot be inspected"


def explain_os_error(error: OSError, store: str | None = None) -> str:
    """What went wrong on which file (or, when the error names none, in which ``store``), and what to do."""
    path = Path(os.fsdecode(error.filename)) if error.filename else None
    where = f" {str(path)!r}" if path is not None else f" in store {store!r}" if store else ""
    what = error.strerror or str(error)
    if error.errno == errno.EROFS:
        return f"cannot write{where}: the file system is mounted read-only; work on a copy on a writable one"
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM):
        me = _user(os.geteuid())
        owner = _owner(path) if path is not None else "the file's owner is unknown"
        return (
            f"permission denied on{where}: {owner}, and you are {me!r}. Run the command as a user who may "
            "write there (the owner, or a member of a group with write access), or ask the owner to grant "
            "access (chmod g+w); read-only users can still run `status`, `du` and `verify`"
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        writing = f" writing{where}" if where else ""
        return f"{what}{writing}: free space or raise the quota (see `sae-store du STORE`), then rerun"
    if isinstance(error, FileNotFoundError):
        return f"{what}{':' if where else ''}{where}; check the path (another process may have removed it)"
    return f"{what}{':' if where else ''}{where}; check the file and rerun"


def _from_codec(error: BaseException) -> bool:
    """Whether ``error`` was raised inside a codec (zarr's codecs, numcodecs' compressors)."""
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1].filename.replace(os.sep, "/") if frames else ""
    return "zarr/codecs/" in last or last.startswith("numcodecs/") or "/numcodecs/" in last


def explain_error(error: BaseException, store: str | None = None) -> str | None:
    """One line for an OS error or a codec error of stored data; None for anything else (a bug)."""
    if isinstance(error, OSError):
        return explain_os_error(error, store)
    if isinstance(error, (RuntimeError, ValueError)) and _from_codec(error):
        target = store or "STORE"
        return (
            f"stored data of {target!r} cannot be decoded ({type(error).__name__}: {error}): a file is "
            f"damaged or was cut short. Run `sae-store verify {target}` to name it, then "
            f"`sae-store verify {target} --repair` and `sae-store extract` to redo its blocks"
        )
    return None
