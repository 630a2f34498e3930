"""Where a run's tasks go: a local cluster, local GPUs, an existing scheduler or a given client."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import dask
from distributed import Client, LocalCluster

from fastism_dist.distributed.settings import WORKER_ENV, check_count
from fastism_dist.errors import FastISMError

SCHEDULER_TIMEOUT = "30s"
WAIT_FOR_WORKERS_S = 120
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ClusterChoice:
    """The cluster a run uses; checked when made.

    Attributes
    ----------
    workers : int, optional
        Local worker processes. Default is one per CPU core (``threads_per_worker`` each), or
        one per GPU with ``gpus``. Ignored with ``scheduler`` or ``client``.
    threads_per_worker : int
        Threads (and TensorFlow intra/inter-op threads) per local worker. Default is 1.
    gpus : bool
        Start a ``dask_cuda.LocalCUDACluster``, one worker per GPU. Default is False.
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:port``, ``tls://...``).
    security : distributed.Security, optional
        TLS settings for a ``tls://`` scheduler.
    client : distributed.Client, optional
        Use this client (and its cluster); it is left open.
    """

    workers: int | None = None
    threads_per_worker: int = 1
    gpus: bool = False
    scheduler: str | None = None
    security: object = None
    client: object = None

    def __post_init__(self):
        if self.workers is not None:
            check_count("workers", self.workers)
        check_count("threads_per_worker", self.threads_per_worker)

    @property
    def where(self):
        """The cluster in words, for the first line ``score`` prints."""
        if self.client is not None:
            return "the given client"
        return self.scheduler or ("LocalCUDACluster" if self.gpus else "LocalCluster")


@contextlib.contextmanager
def connect(choice):
    """A client on the chosen cluster; closes what it started.

    Parameters
    ----------
    choice : ClusterChoice

    Yields
    ------
    distributed.Client
    """
    if choice.client is not None:
        yield choice.client
    elif choice.scheduler is not None:
        with _scheduler_client(choice.scheduler, choice.security) as cli:
            yield cli
    else:
        with _local_client(choice) as cli:
            yield cli


@contextlib.contextmanager
def _scheduler_client(address, security):
    try:
        cli = Client(address, security=security, timeout=SCHEDULER_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise FastISMError(f"cannot connect to scheduler {address}: {err}") from None
    try:
        try:
            cli.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError:
            raise FastISMError(f"scheduler {address} has no workers "
                               f"(waited {WAIT_FOR_WORKERS_S} s)") from None
        yield cli
    finally:
        cli.close()


@contextlib.contextmanager
def _local_client(choice):
    threads = choice.threads_per_worker
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        if choice.gpus:
            cluster = _cuda_cluster(choice.workers, threads)
        else:
            env = dict(WORKER_ENV, OMP_NUM_THREADS=str(threads),
                       CUDA_VISIBLE_DEVICES="")  # CPU workers must not each claim every GPU
            n = choice.workers or max(1, (os.cpu_count() or 1) // threads)
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                                   dashboard_address=f"{LOCAL_HOST}:0", host=LOCAL_HOST, env=env)
    try:
        cli = Client(cluster, set_as_default=False)
        try:
            yield cli
        finally:
            cli.close()
    finally:
        cluster.close()


def _cuda_cluster(workers, threads_per_worker):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise FastISMError("--gpus needs dask-cuda: pip install 'fastism_dist[gpu]'") from None
    try:
        return LocalCUDACluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                dashboard_address=f"{LOCAL_HOST}:0", host=LOCAL_HOST)
    except Exception as err:  # noqa: BLE001 - pynvml raises NVMLError_* (not ImportError)
        detail = str(err).splitlines()[0] if str(err) else "no detail"
        raise FastISMError(f"--gpus: no usable NVIDIA GPU ({type(err).__name__}: {detail}); "
                           "run without --gpus") from None


def dashboard_link(cli):
    """The dashboard address of ``cli``'s scheduler, or None where it has no dashboard."""
    try:
        if not cli.scheduler_info().get("services", {}).get("dashboard"):
            return None
        return cli.dashboard_link
    except (KeyError, AttributeError, OSError):
        return None


def n_workers(cli):
    """Workers connected to ``cli``'s scheduler now."""
    return len(cli.scheduler_info(n_workers=-1)["workers"])
