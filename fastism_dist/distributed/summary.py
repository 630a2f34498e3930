"""What ``score`` did: running totals kept as chunks complete, and the final ``ScoreSummary``."""

from __future__ import annotations

from dataclasses import dataclass, field


class RunTotals:
    """Counts of the completed chunks, updated in constant time per chunk.

    Attributes
    ----------
    chunks, mutations : int
    per_worker : dict
        Worker address -> ``{"chunks", "mutations", "sequences", "xla"}`` (``xla``: whether
        the worker's last task ran with XLA, see ``plugin.xla_choice``).
    tasks : list of dict
        Every task's result (chunk, worker, sequences, mutations, ism_s, seconds).
    """

    def __init__(self):
        self.chunks = 0
        self.mutations = 0
        self.per_worker = {}
        self.tasks = []

    def add(self, result):
        """Count one task's result (as returned by ``score_chunk``)."""
        self.chunks += 1
        self.mutations += result["mutations"]
        share = self.per_worker.setdefault(result["worker"],
                                           {"chunks": 0, "mutations": 0, "sequences": 0})
        share["chunks"] += 1
        share["mutations"] += result["mutations"]
        share["sequences"] += result["sequences"]
        share["xla"] = result.get("xla")
        self.tasks.append(result)


@dataclass
class ScoreSummary:
    """What ``score`` did: counts, timings and each worker's share of the chunks it ran.

    ``compute_s`` is the scoring phase (first task submitted to last result), after the model
    was loaded on the workers (``setup_s``); ``wall_s`` is the whole call.
    """

    store: str
    n_sequences: int
    n_chunks: int
    chunks_run: int
    chunks_skipped: int
    mutations: int
    wall_s: float
    compute_s: float
    n_workers: int = 0
    setup_s: float = 0.0
    chunk_size: int = 0
    dashboard_link: str | None = None
    per_worker: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)  # per chunk: worker, mutations, ism_s, seconds

    @property
    def mutations_per_s(self):
        return self.mutations / self.compute_s if self.compute_s > 0 else float("nan")

    def __str__(self):
        lines = [
            f"store       {self.store}",
            f"sequences   {self.n_sequences} in {self.n_chunks} chunks of {self.chunk_size} "
            f"({self.chunks_run} computed, {self.chunks_skipped} already done)",
            f"mutations   {self.mutations:,} computed",
            f"wall time   {self.wall_s:.1f} s ({self.setup_s:.1f} s loading the model on "
            f"{self.n_workers} worker(s), {self.compute_s:.1f} s scoring)",
            f"throughput  {self.mutations_per_s:,.0f} mutations/s",
        ]
        total = sum(w["chunks"] for w in self.per_worker.values()) or 1
        for address, share in sorted(self.per_worker.items()):
            xla = {True: ", XLA", False: ", no XLA"}.get(share.get("xla"), "")
            lines.append(f"  worker {address}: {share['chunks']} chunks "
                         f"({100 * share['chunks'] / total:.0f}%), {share['mutations']:,} "
                         f"mutations{xla}")
        return "\n".join(lines)
