"""Fixtures of the job tests, including a real single-node SLURM started for the session.

:class:`LocalSlurm` installs the Debian packages when they are missing (root and apt-get needed),
starts munged (as user ``munge``), slurmctld and slurmd with a private state folder and free ports,
waits until the node is idle, and stops everything by PID afterwards. The benchmark reuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from sae_store.jobs import Manifest, run_pipeline
from sae_store.jobs.config import DEMO_CONFIG, PipelineConfig, config_from_dict
from sae_store.jobs.slurm import squeue
from tests import apt

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
_BINARIES = ("slurmctld", "slurmd", "sbatch", "munged")
NODE = "saenode"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here at all (not root, no apt-get): tests skip."""


class SlurmStartError(RuntimeError):
    """Installing or starting SLURM failed although it should work here: tests fail."""


def _run(cmd: list[str], *, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode:
        raise SlurmStartError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out.stdout


def install_packages() -> None:
    """Install the SLURM and munge Debian packages if a binary is missing; never starts services."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in _BINARIES):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("SLURM is not installed and there is no apt-get to install it with")
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:  # keep postinst scripts from starting system daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for cmd in apt.commands(*PACKAGES, recommends=False):
            _run(cmd, timeout=apt.LOCK_WAIT_S + 600, env=apt.ENV)
    finally:
        if added_policy:
            policy.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_pid(pid_file: Path, comm: str) -> None:
    """SIGTERM the process named in ``pid_file`` if it is ``comm``; SIGKILL it after 10 s."""
    try:
        pid = int(pid_file.read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
            return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == comm:
        os.kill(pid, signal.SIGKILL)


class LocalSlurm:
    """A private single-node SLURM cluster under ``root``; use as a context manager."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="sae-slurm-"))
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def __enter__(self) -> LocalSlurm:
        install_packages()
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmctld/slurmd with a private state folder needs root")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        r = self.root
        for d in ("etc", "run/munge", "log", "state/ctld", "state/d", "bin", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # munged runs as `munge` and must reach its folders
        munge = pwd.getpwnam("munge")
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        for p in (r / "munge", r / "run" / "munge", key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        (r / "munge").chmod(0o700)
        (r / "run" / "munge").chmod(0o755)
        (r / "run").chmod(0o755)
        socket_path = r / "run" / "munge" / "munge.socket.2"
        _run(["runuser", "-u", "munge", "--", "munged", f"--key-file={key}", f"--socket={socket_path}",
              f"--pid-file={r / 'run/munge/munged.pid'}", f"--log-file={r / 'munge/munged.log'}",
              f"--seed-file={r / 'munge/munged.seed'}"])  # fmt: skip
        mailprog = r / "bin" / "mailprog"
        mailprog.write_text(f'#!/bin/sh\necho "$@" >> {r / "log" / "mail.log"}\ncat >/dev/null\n')
        mailprog.chmod(0o755)
        hw = _run(["slurmd", "-C"]).splitlines()[0]
        hw = re.sub(r"^NodeName=\S+", f"NodeName={NODE} NodeAddr=127.0.0.1", hw)
        self.conf.write_text(
            "\n".join([
                "ClusterName=saetest",
                f"SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={socket_path}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/filetxt",
                f"JobCompLoc={r / 'log/jobcomp.txt'}",
                f"MailProg={mailprog}",
                "SchedulerType=sched/backfill",
                "SchedulerParameters=batch_sched_delay=0",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MinJobAge=600",
                f"StateSaveLocation={r / 'state/ctld'}",
                f"SlurmdSpoolDir={r / 'state/d'}",
                f"SlurmctldPidFile={r / 'run/slurmctld.pid'}",
                f"SlurmdPidFile={r / 'run/slurmd.pid'}",
                f"SlurmctldLogFile={r / 'log/slurmctld.log'}",
                f"SlurmdLogFile={r / 'log/slurmd.log'}",
                hw,
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ])
        )  # fmt: skip
        _run(["slurmctld", "-f", str(self.conf)], env=self.env)
        self._wait_pid(r / "run" / "slurmctld.pid", "slurmctld")
        _run(["slurmd", "-f", str(self.conf), "-N", NODE], env=self.env)
        self._wait_pid(r / "run" / "slurmd.pid", "slurmd")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._wait_pid(r / "run" / "slurmctld.pid", "slurmctld", timeout=0)
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env
            )
            if out.stdout.strip() == "idle":
                return
            time.sleep(0.2)
        raise SlurmStartError(f"the node did not become idle in 30 s; see {r / 'log'}")

    def _wait_pid(self, pid_file: Path, comm: str, timeout: float = 15) -> None:
        # slurmctld can exit 0 and die after forking: wait for a live process named in the pid file.
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid = int(pid_file.read_text().split()[0])
                if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                    return
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() >= deadline:
                log = self.root / "log" / f"{comm}.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise SlurmStartError(f"{comm} is not running; end of {log}:\n{tail}")
            time.sleep(0.1)

    def queue(self) -> list[str]:
        """Job ids still known to squeue."""
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env)
        return out.stdout.split()

    def wait_idle(self, timeout: float = 120) -> None:
        """Poll squeue until no job is queued or running."""
        deadline = time.monotonic() + timeout
        while self.queue():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still queued after {timeout} s: {self.queue()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by their PIDs."""
        if self.conf.exists() and (self.root / "run" / "slurmctld.pid").exists():
            subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, env=self.env, timeout=30)
            with contextlib.suppress(TimeoutError):
                self.wait_idle(timeout=15)
        _stop_pid(self.root / "run" / "slurmd.pid", "slurmd")
        _stop_pid(self.root / "run" / "slurmctld.pid", "slurmctld")
        _stop_pid(self.root / "run" / "munge" / "munged.pid", "munged")


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    """A running single-node SLURM (partition ``debug``); ``SLURM_CONF`` is set while it runs."""
    try:
        cluster = LocalSlurm().__enter__()
    except SlurmUnavailable as e:
        pytest.skip(f"no single-node SLURM: {e}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, section by section."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., PipelineConfig]:
    """Factory: the demo config rooted at ``tmp_path/run`` (or ``root``) with section overrides."""

    def make(root: Path | None = None, **overrides: Any) -> PipelineConfig:
        data = merge(yaml.safe_load(DEMO_CONFIG.read_text()), overrides)
        return config_from_dict(data, root=root or tmp_path / "run")

    return make


#: The demo pipeline made quick for end-to-end tests: two of the four layers, short SAE training, no
#: captions, interventions or report (their commands have their own tests); every array kind kept.
FAST: dict[str, Any] = {
    "layers": [0, 2],
    "skip": ["caption", "export-saes", "evaluate", "intervene-ablate", "intervene-amplify",
             "intervene-neutralise", "intervene-summary", "explain", "explain-model", "report"],
    "sae": {"steps": 20, "batch_size": 256},
    "analysis": {"cluster": "none", "bootstrap": 20, "permutations": 0},
}  # fmt: skip


def fast_config(root: Path, **overrides: Any) -> PipelineConfig:
    """The :data:`FAST` demo pipeline rooted at ``root``, with further section overrides."""
    data = merge(merge(yaml.safe_load(DEMO_CONFIG.read_text()), FAST), overrides)
    return config_from_dict(data, root=root)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The :data:`FAST` pipeline run locally once per session: what every SLURM run must equal."""
    root = tmp_path_factory.mktemp("reference") / "run"
    run_pipeline(fast_config(root), echo=lambda line: None)
    return root


def copy_inputs(local_root: Path, root: Path) -> None:
    """Copy the demo inputs (data, model) of a local run, so a new run starts at ``init``."""
    for name in ("data", "model"):
        shutil.copytree(local_root / name, root / name)


def wait_for(manifest: Manifest, timeout: float = 300) -> None:
    """Poll squeue until no job of ``manifest`` is queued or running."""
    deadline = time.monotonic() + timeout
    while squeue(manifest.job_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {manifest.job_ids} still queued after {timeout} s")
        time.sleep(0.5)


def _array_names(group: zarr.Group, ignore_groups: tuple[str, ...]) -> list[str]:
    names = [name for name, _ in group.arrays()]
    for g, sub in group.groups():
        if g not in ignore_groups:
            names += [f"{g}/{n}" for n, _ in sub.arrays()]
    return sorted(names)


def assert_same_store(a: Path, b: Path, *, ignore_groups: tuple[str, ...] = ()) -> None:
    """Every array of store ``a`` (in every group but ``ignore_groups``) equals ``b``'s bit for bit."""
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    names = _array_names(ga, ignore_groups)
    assert names == _array_names(gb, ignore_groups)
    for name in names:
        x, y = np.asarray(ga[name][...]), np.asarray(gb[name][...])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":  # bit patterns, so NaN fill values compare too
            assert np.array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}")), name
        else:
            assert np.array_equal(x, y), name


def assert_same_results(a: Path, b: Path) -> None:
    """The JSON results of run ``a`` equal those of run ``b`` (with ``b``'s root read as ``a``'s)."""
    files = sorted(p.relative_to(a / "results") for p in (a / "results").rglob("*.json"))
    assert files == sorted(p.relative_to(b / "results") for p in (b / "results").rglob("*.json"))
    for f in files:
        text = (b / "results" / f).read_text().replace(str(b), str(a))
        assert json.loads(text) == json.loads((a / "results" / f).read_text()), f
