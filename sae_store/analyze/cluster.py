"""Where analysis tasks run: a dask LocalCluster, a dask-jobqueue SLURMCluster, or this process.

The analyses build one dask ``Delayed`` per unit of work (e.g. one layer and language) whose inputs
are lazy slices of the store, so workers read their own data; :func:`compute_tasks` runs them on
whatever :func:`open_cluster` gave, with a progress bar. The code path is the same for every kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dask.delayed import Delayed
from distributed import Client, as_completed
from threadpoolctl import threadpool_limits

from sae_store.analyze.config import ClusterConfig
from sae_store.progress import progress_bar

log = logging.getLogger(__name__)


def make_cluster(config: ClusterConfig) -> Any:
    """Create the dask cluster ``config`` describes (None for ``kind="none"``); no SLURM job is submitted yet.

    ``local``: a LocalCluster of ``workers`` processes on this machine. ``slurm``: a dask-jobqueue
    SLURMCluster whose jobs each run one worker process with ``threads_per_worker`` cores and
    ``memory_per_worker``, in ``slurm_queue``/``slurm_account`` for ``slurm_walltime``, plus the
    ``slurm_directives`` lines; ``cluster.job_script()`` shows the script it will submit.
    """
    if config.kind == "none":
        return None
    if config.kind == "local":
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=config.workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_per_worker,
            processes=True,
            dashboard_address=None,
            # without a dashboard the scheduler still serves health routes, on port 8787 unless told
            # otherwise: a free port, so two clusters on one login node do not collide
            scheduler_kwargs={"dashboard_address": ":0"},
        )
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        cores=config.threads_per_worker,
        processes=1,
        memory=config.memory_per_worker,
        queue=config.slurm_queue,
        account=config.slurm_account,
        walltime=config.slurm_walltime,
        job_extra_directives=list(config.slurm_directives),
    )


@contextmanager
def open_cluster(config: ClusterConfig) -> Iterator[Client | None]:
    """Start the cluster ``config`` describes and yield a client for it (None for ``kind="none"``).

    For ``slurm``, ``workers`` worker jobs are submitted. Everything is shut down on exit.
    """
    # the scheduler's INFO lines (ports, nannies) would drown the analyses' own progress
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        cluster = make_cluster(config)
        if cluster is None:
            yield None
            return
        if config.kind == "slurm":
            cluster.scale(jobs=config.workers)
            log.info("submitted %d SLURM worker jobs:\n%s", config.workers, cluster.job_script())
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
    finally:
        quiet.setLevel(level)


def compute_tasks(tasks: Sequence[Delayed], client: Client | None, *, desc: str) -> list[Any]:
    """Compute ``tasks`` (on ``client``'s cluster, or one by one here) and return results in order.

    Here, as on dask's workers, the tasks' matrix products use one BLAS thread: float32 products round
    differently with other thread counts, and a result must not depend on where it was computed.
    """
    if client is None:
        with threadpool_limits(1):
            return [t.compute(scheduler="synchronous") for t in progress_bar(tasks, desc=desc, unit="task")]
    futures = client.compute(list(tasks))
    for _ in progress_bar(as_completed(futures), total=len(futures), desc=desc, unit="task"):
        pass
    return [f.result() for f in futures]
