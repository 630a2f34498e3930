"""A task writes its chunk while the worker's next task runs ISM: the overlap, its bound, a kill.

The store's writes are slowed down on the workers (every ``StoreWriter.write_chunk`` sleeps
first, patched in the worker processes) so that each write lasts far longer than the ISM of a
tiny chunk; the tasks' ``timeline`` (start, start and end of ISM, start of write, end: wall
clock of one worker process) then shows what ran beside what.
"""

import contextlib
import time

import pytest

from conftest import LENGTH, random_letters, write_fasta
from fastism_dist.distributed import score
from fastism_dist.distributed.sink import leave_thread_pool
from test_engine import assert_store_equals, read_x, score_killing_a_worker

pytestmark = pytest.mark.cluster
WRITE_DELAY = 0.6


def _slow_writes(delay):
    """In a worker process: make every chunk write sleep ``delay`` seconds first."""
    from fastism_dist.store.writer import StoreWriter

    original = getattr(StoreWriter.write_chunk, "original", StoreWriter.write_chunk)

    def slow_write_chunk(self, *args, **kwargs):
        time.sleep(delay)
        return original(self, *args, **kwargs)

    slow_write_chunk.original = original
    StoreWriter.write_chunk = slow_write_chunk


@contextlib.contextmanager
def cluster_with_slow_writes(workers, threads, delay=WRITE_DELAY):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cl, Client(cl) as cli:
        cli.run(_slow_writes, delay)
        yield cli


def _by_worker(summary):
    tasks = {}
    for task in summary.tasks:
        tasks.setdefault(task["worker"], []).append(task)
    return [sorted(own, key=lambda t: t["timeline"][0]) for own in tasks.values()]


def _most_at_once(intervals):
    """The largest number of (start, end) intervals open at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _ism(task):
    return task["timeline"][1], task["timeline"][2]


def _write(task):
    return task["timeline"][3], task["timeline"][4]


def _whole(task):
    return task["timeline"][0], task["timeline"][4]


def _score_with_slow_writes(tmp_path, model_path, n, seed, threads):
    """Score ``n`` sequences in chunks of 2 on 1 worker; check the store; the worker's tasks
    in the order they started."""
    fasta = write_fasta(tmp_path / "in.fa", random_letters(n, LENGTH, seed=seed))
    out = str(tmp_path / "out.zarr")
    with cluster_with_slow_writes(workers=1, threads=threads) as cli:
        summary = score(model_path, fasta, out, client=cli, chunk_size=2, method="fast",
                        progress=False)
    assert_store_equals(out, model_path, read_x(fasta), method="fast")
    (tasks,) = _by_worker(summary)
    return tasks


def test_next_chunk_runs_ism_while_a_chunk_is_written(tmp_path, tiny_model_path):
    tasks = _score_with_slow_writes(tmp_path, tiny_model_path, n=10, seed=3, threads=1)
    assert len(tasks) == 5
    assert all(t["write_s"] >= WRITE_DELAY for t in tasks)
    for before, after in zip(tasks, tasks[1:]):
        assert _ism(after)[0] < _write(before)[1]  # ran ISM while `before` wrote
        assert _ism(after)[1] <= _write(after)[0]  # its own write after its ISM
    assert _most_at_once([_ism(t) for t in tasks]) == 1  # one ISM at a time
    assert _most_at_once([_write(t) for t in tasks]) == 1  # one write slot per thread
    # a chunk waits for the slot before it leaves the pool: never a third chunk in memory
    assert _most_at_once([_whole(t) for t in tasks]) == 2


def test_two_threads_two_write_slots(tmp_path, tiny_model_path):
    tasks = _score_with_slow_writes(tmp_path, tiny_model_path, n=12, seed=4, threads=2)
    assert _most_at_once([_ism(t) for t in tasks]) == 1
    assert _most_at_once([_write(t) for t in tasks]) == 2


def test_worker_killed_while_writing(tmp_path, tiny_model_path):
    """Most of each task is its write here, so the kill lands in one (or two: the worker's
    computed next chunk waits for its slot); those chunks are rescored, none is half-kept."""
    fasta = write_fasta(tmp_path / "in.fa", random_letters(10, LENGTH, seed=6))
    out = str(tmp_path / "out.zarr")
    with cluster_with_slow_writes(workers=2, threads=1, delay=0.8) as cli:
        done_at_kill, summary = score_killing_a_worker(
            cli, tiny_model_path, fasta, out, settle_s=0.3,  # into the next writes
            chunk_size=1, method="fast")
    assert done_at_kill < 10
    assert summary.chunks_run == 10
    assert_store_equals(out, tiny_model_path, read_x(fasta), method="fast")


def test_leaving_the_pool_outside_a_worker_does_nothing():
    leave_thread_pool()  # dask's secede would raise here: this thread is no worker's
