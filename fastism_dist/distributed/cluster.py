"""Where a run's tasks go: a local cluster, local GPUs, an existing scheduler or a given client.

Local clusters listen on loopback and talk TLS with a throw-away certificate made for the
cluster (``distributed.Security.temporary()``), so other users of the machine cannot submit
work to them. They run dask's profiler and memory and system monitors less often than
distributed ships (``settings.LOCAL_MONITORING``) unless the user's dask config says otherwise.
With a log file, everything the cluster and its worker processes log goes there instead of the
terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

import dask
from distributed import Client, LocalCluster, Security
from distributed.comm import parse_address, parse_host_port, registry

from fastism_dist.distributed.settings import WORKER_ENV, check_count, local_cluster_config
from fastism_dist.errors import FastISMError

SCHEDULER_TIMEOUT = "10s"
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
    log_file : str, optional
        Where the log lines of this process's ``distributed`` loggers go while connected and,
        for a local cluster, everything its worker processes write to stderr (tracebacks,
        TensorFlow's start-up lines). Default is the terminal.
    """

    workers: int | None = None
    threads_per_worker: int = 1
    gpus: bool = False
    scheduler: str | None = None
    security: object = None
    client: object = None
    log_file: str | None = None

    def __post_init__(self):
        if self.workers is not None:
            check_count("workers", self.workers)
        check_count("threads_per_worker", self.threads_per_worker)
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler)

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
    with _distributed_logs_to(choice.log_file):
        if choice.client is not None:
            yield choice.client
        elif choice.scheduler is not None:
            with _scheduler_client(choice.scheduler, choice.security) as cli:
                yield cli
        else:
            with _local_client(choice) as cli:
                yield cli


def check_scheduler_address(address):
    """Raise ``FastISMError`` unless ``address`` reads as ``[PROTOCOL://]HOST:PORT``."""
    expected = "expected tcp://HOST:PORT or tls://HOST:PORT"
    if not isinstance(address, str) or not address:
        raise FastISMError(f"{address!r} is not a scheduler address; {expected}")
    try:
        protocol, location = parse_address(address)
        if protocol not in registry.backends:
            raise ValueError(f"unknown protocol {protocol!r}")
        if protocol != "inproc":
            parse_host_port(location)
    except ValueError as err:
        raise FastISMError(f"{address!r} is not a scheduler address ({err}); {expected}") from None


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
    security = local_security()
    with (dask.config.set(local_cluster_config()),
          _child_stderr_to(choice.log_file)):
        if choice.gpus:
            cluster = _cuda_cluster(choice.workers, threads, security)
        else:
            env = dict(WORKER_ENV, OMP_NUM_THREADS=str(threads),
                       CUDA_VISIBLE_DEVICES="")  # CPU workers must not each claim every GPU
            n = choice.workers or max(1, (os.cpu_count() or 1) // threads)
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                                   dashboard_address=f"{LOCAL_HOST}:0", host=LOCAL_HOST, env=env,
                                   security=security)
    try:
        cli = Client(cluster, security=security, set_as_default=False)
        try:
            yield cli
        finally:
            cli.close()
    finally:
        cluster.close()


def local_security():
    """TLS settings of a local cluster: a certificate made now, held in memory only.

    The scheduler, workers and client all present it, and a connection without it (plain
    ``tcp://``, or TLS without the certificate) is refused.
    """
    try:
        return Security.temporary()
    except ImportError:
        raise FastISMError("local clusters use TLS, which needs the cryptography package: "
                           "pip install cryptography") from None


def _cuda_cluster(workers, threads_per_worker, security):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise FastISMError("--gpus needs dask-cuda: pip install 'fastism_dist[gpu]'") from None
    try:
        return LocalCUDACluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                dashboard_address=f"{LOCAL_HOST}:0", host=LOCAL_HOST,
                                security=security)
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


@contextlib.contextmanager
def _child_stderr_to(path):
    """Processes started inside the block write their stderr to ``path`` (None: unchanged)."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _terminal_handlers():
    """The logging handlers of this process that write to the terminal's stderr."""
    terminal = {id(sys.stderr), id(sys.__stderr__)}
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in
                                       list(logging.root.manager.loggerDict)]
    handlers = {id(h): h for lg in loggers for h in lg.handlers
                if type(h) is logging.StreamHandler and id(h.stream) in terminal}
    return list(handlers.values())


@contextlib.contextmanager
def _distributed_logs_to(path):
    """Log lines of this process that would reach the terminal go to ``path`` instead."""
    if path is None:
        yield
        return
    with open(path, "a") as log:
        previous = [(h, h.setStream(log)) for h in _terminal_handlers()]
        try:
            yield
        finally:
            for handler, stream in previous:
                handler.setStream(stream)
