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
from tqdm.auto import tqdm

from sae_store.analyze.config import ClusterConfig

log = logging.getLogger(__name__)


@contextmanager
def open_cluster(config: ClusterConfig) -> Iterator[Client | None]:
    """Start the cluster ``config`` describes and yield a client for it (None for ``kind="none"``).

    ``local`` starts ``workers`` processes on this machine; ``slurm`` submits ``workers`` SLURM jobs
    of one dask worker each (dask-jobqueue), with the partition, account, wall time, memory and
    extra ``#SBATCH`` lines of the config. Everything is shut down on exit.
    """
    if config.kind == "none":
        yield None
        return
    # the scheduler's INFO lines (ports, nannies) would drown the analyses' own progress
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    cluster: Any
    if config.kind == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=config.workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_per_worker,
            processes=True,
            dashboard_address=None,
        )
    else:
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(
            cores=config.threads_per_worker,
            processes=1,
            memory=config.memory_per_worker,
            queue=config.slurm_queue,
            account=config.slurm_account,
            walltime=config.slurm_walltime,
            job_extra_directives=list(config.slurm_directives),
        )
        cluster.scale(jobs=config.workers)
        log.info("submitted %d SLURM worker jobs:\n%s", config.workers, cluster.job_script())
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        quiet.setLevel(level)


def compute_tasks(tasks: Sequence[Delayed], client: Client | None, *, desc: str) -> list[Any]:
    """Compute ``tasks`` (on ``client``'s cluster, or one by one here) and return results in order."""
    if client is None:
        return [t.compute(scheduler="synchronous") for t in tqdm(tasks, desc=desc, unit="task")]
    futures = client.compute(list(tasks))
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="task"):
        pass
    return [f.result() for f in futures]
