"""ISM of the central window of a long-range model (the fastISM paper's Table 2 / §3.2 setup for
Enformer and Akita): naive vs fast, and where the fast path's time goes.

The model is ``fastism_dist.models.long_range`` (an Enformer-like conv/pool tower followed by
transformer blocks) at ``--seq-len`` (default 4096), with seeded random weights and random
BatchNorm statistics (ISM cost does not depend on the weights). ISM covers the central
``--window`` bases (default 1000: ``start = (L - window) // 2``), all 3 alternate bases each.

Stop-layer share (how the time splits between the local tower and the layers that mix all
positions). From the plan (``fastism_dist.core.plan.make_plan``) we take every node the fast path
must compute in full (the first stop layer on each path and everything after it: attention,
the transformer blocks, the head) and build a *suffix* function that runs exactly those nodes,
starting from the tensors that feed them (the stop frontier, here the tower output), tiled to a
batch of ``M`` mutants. Timing it (best of ``repeats`` after a warm-up) against the whole model
on ``M`` full mutant sequences gives:

- ``stop_share`` of the naive row: suffix / whole-model time per mutant, the fraction of naive
  ISM spent at and after the stop frontier;
- ``ideal_speedup``: whole / suffix, the speedup of a perfect method that made the tower free
  (the paper's analysis of Akita: ~60% of the time in such layers -> at most ~1.7x);
- ``stop_share`` of the fast row: suffix time per mutant x the number of mutants / the measured
  FastISM time, the fraction of the fast path spent in stop layers (the rest is the reference
  pass, windowed recomputation, gathers and output assembly).

Run from the repository root::

    python -m benchmarks.long_range                          # L=4096, central 1 kb, 2 and 4 blocks
    python -m benchmarks.long_range --seq-len 8192 --n-attention 1,2,4 --n-seqs 2
"""

from __future__ import annotations

import argparse
import time

try:
    from benchmarks import common
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import common

#: A tiny version of the architecture, for smoke tests (``--tiny``).
TINY = dict(filters=8, n_conv_blocks=2, heads=2, key_dim=4, n_outputs=2, stem_kernel=5,
            conv_kernel=3)

COLUMNS = [
    ("model", "model", ""),
    ("seq_len", "L", ""),
    ("window", "window", ""),
    ("n_attention", "attention blocks", ""),
    ("method", "method", ""),
    ("n_seqs", "N", ""),
    ("s_per_100", "s / 100 seqs", ".2f"),
    ("speedup", "speedup vs naive", ".2f"),
    ("bound", "FLOP bound", ".2f"),
    ("frac_bound", "% of bound", ".0%"),
    ("stop_share", "time in stop layers", ".0%"),
    ("ideal_speedup", "ideal speedup", ".2f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("peak_delta_mb", "Δ peak MB", ".0f"),
    ("note", "note", ""),
]


def build_model(seq_len, n_attention, model_kwargs=None, seed=0):
    """The long-range model with seeded random weights and random BatchNorm statistics."""
    from fastism_dist import models

    model = models.long_range(seq_len=seq_len, n_attention=n_attention, seed=seed,
                              **(model_kwargs or {}))
    return models.randomize_batch_norm(model, seed)


def central_window(seq_len, window):
    """(start, end) of the central ``window`` positions."""
    window = min(window, seq_len)
    start = (seq_len - window) // 2
    return start, start + window


def measure(seq_len, window, n_attention, method, n_seqs=2, repeats=3, batch_size=None,
            model_kwargs=None, fast_options=None, seed=0):
    """Time naive or fast ISM of the central window on ``n_seqs`` random sequences.

    Returns
    -------
    dict
        ``seconds`` (best of ``repeats`` after one warm-up), ``times``, ``s_per_100``,
        ``setup_s``, ``batch_size``, ``peak_rss_mb``, ``peak_delta_mb``, ``note``.
    """
    from fastism_dist import FastISM, NaiveISM

    model = build_model(seq_len, n_attention, model_kwargs, seed)
    start, end = central_window(seq_len, window)
    x = common.random_onehot(n_seqs, seq_len, seed=seed + 1)
    t0 = time.perf_counter()
    if method == "naive":
        ism = NaiveISM(model, start=start, end=end, check=False, batch_size=batch_size)
    elif method == "fast":
        ism = FastISM(model, start=start, end=end, check=False, batch_size=batch_size,
                      **(fast_options or {}))
    else:
        raise ValueError(f"unknown method {method!r}: naive or fast")
    setup_s = time.perf_counter() - t0
    if method == "fast":  # tracing and the XLA decision before the timed calls, as in Table 1
        ism.warm_up(x)
    timing = common.best_of(lambda: ism(x), repeats=repeats)
    note = f"{ism.batch_size} per call"
    if fast_options:
        note += "; " + ", ".join(f"{k}={v}" for k, v in sorted(fast_options.items()))
    return {"seconds": timing["seconds"], "times": timing["times"],
            "warmup_s": timing["warmup_s"], "s_per_100": timing["seconds"] * 100.0 / n_seqs,
            "cpu_s_per_100": timing["cpu_seconds"] * 100.0 / n_seqs,
            "setup_s": setup_s, "batch_size": ism.batch_size,
            "n_mutations": int(n_seqs * (end - start) * 3),
            "peak_rss_mb": common.peak_rss_mb(), "peak_delta_mb": timing["peak_delta_mb"],
            "note": note}


def stop_analysis(seq_len, window, n_attention, batch_size=None, repeats=3, model_kwargs=None,
                  seed=0):
    """Time the whole model and the stop-layer suffix on a batch of ``M`` mutants.

    Returns
    -------
    dict
        ``full_s`` and ``suffix_s`` (best seconds per call of ``M`` mutants), ``m``,
        ``naive_stop_share`` = suffix / full, ``ideal_speedup`` = full / suffix,
        ``suffix_s_per_mutant``, ``stop_layers`` (names of the first stop layers).
    """
    import numpy as np
    import tensorflow as tf

    from fastism_dist.core.graph import read_graph
    from fastism_dist.core.plan import FULL, make_plan

    model = build_model(seq_len, n_attention, model_kwargs, seed)
    start, end = central_window(seq_len, window)
    m = int(batch_size or 256)
    graph = read_graph(model)
    plan = make_plan(graph, graph.input_ids[0], np.arange(start, end), 1)
    full_nodes = [p.node for p in plan.nodes if p.state == FULL]
    full_out = {t for node in full_nodes for t in node.out_ids}
    frontier = sorted({t for node in full_nodes for t in node.arg_ids if t not in full_out})
    outputs = [t for t in graph.output_ids if t in full_out]

    x = common.random_onehot(1, seq_len, seed=seed + 1)
    ref = graph.run([tf.constant(x)], keep=frontier)
    tiled = [tf.repeat(ref[t], m, axis=0) for t in frontier]
    mutants = tf.constant(np.repeat(x, m, axis=0))

    @tf.function
    def suffix(*frontier_values):
        values = dict(zip(frontier, frontier_values))
        for node in full_nodes:
            for tid, value in zip(node.out_ids, graph.call(node, values)):
                values[tid] = value
        return [values[t] for t in outputs]

    @tf.function
    def whole(xb):
        return model(xb, training=False)

    full_s = common.best_of(lambda: [np.asarray(o) for o in tf.nest.flatten(whole(mutants))],
                            repeats=repeats)["seconds"]
    suffix_s = common.best_of(lambda: [np.asarray(o) for o in suffix(*tiled)],
                              repeats=repeats)["seconds"]
    return {"full_s": full_s, "suffix_s": suffix_s, "m": m,
            "naive_stop_share": suffix_s / full_s, "ideal_speedup": full_s / suffix_s,
            "suffix_s_per_mutant": suffix_s / m,
            "stop_layers": [n.node.name for n in plan.stop_nodes()]}


def main(argv=None):
    """Parse the command line, run every configuration, write the result files.

    Returns
    -------
    (Path, Path)
        The JSON and markdown files written.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=4096, help="input length. Default 4096")
    parser.add_argument("--window", type=int, default=1000,
                        help="central positions mutated. Default 1000")
    parser.add_argument("--n-attention", default="2,4",
                        help="comma-separated numbers of transformer blocks. Default 2,4")
    parser.add_argument("--methods", default="naive,fast", help="naive and/or fast")
    parser.add_argument("--n-seqs", type=int, default=2, help="sequences timed. Default 2")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mutations per model call (default: the executor's; 256 for the "
                             "stop-layer analysis)")
    parser.add_argument("--fast-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra FastISM keyword argument (repeatable)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra long_range() argument, e.g. filters=128 (repeatable)")
    parser.add_argument("--no-analysis", action="store_true", help="skip the stop-layer timing")
    parser.add_argument("--seed", type=int, default=0, help="weights and sequences seed")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (smoke tests)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="run each measurement in a fresh process (clean peak RSS)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="long_range", help="result file name")
    args = parser.parse_args(argv)

    methods = common.csv_list(args.methods)
    if not methods or set(methods) - {"naive", "fast"}:
        parser.error("--methods takes naive and/or fast")
    fast_options = common.parse_options(args.fast_option)
    model_kwargs = dict(TINY if args.tiny else {}, **common.parse_options(args.model_option))
    start, end = central_window(args.seq_len, args.window)

    def call(target, **kwargs):
        kwargs.update(model_kwargs=model_kwargs, seed=args.seed)
        if args.isolate:
            return common.run_isolated(f"benchmarks.long_range:{target}", kwargs,
                                       timeout=args.timeout)
        try:
            return globals()[target](**kwargs)
        except Exception as err:  # keep the other rows
            return {"error": f"{type(err).__name__}: {err}"}

    machine = common.machine_info()
    rows = []
    for n_attention in common.csv_list(args.n_attention, int):
        bound = common.flop_bound(build_model(args.seq_len, n_attention, model_kwargs, args.seed),
                                  start=start, end=end)
        base = {"model": "long_range", "seq_len": args.seq_len, "window": end - start,
                "n_attention": n_attention, "n_seqs": args.n_seqs}
        group = {}
        for method in methods:
            print(f"[long_range] {n_attention} attention blocks, {method} ...", flush=True)
            result = call("measure", seq_len=args.seq_len, window=args.window,
                          n_attention=n_attention, method=method, n_seqs=args.n_seqs,
                          repeats=args.repeats, batch_size=args.batch_size,
                          fast_options=fast_options if method == "fast" else None)
            group[method] = dict(base, method=method, **result)
        analysis = {}
        if not args.no_analysis:
            print(f"[long_range] {n_attention} attention blocks, stop-layer analysis ...",
                  flush=True)
            analysis = call("stop_analysis", seq_len=args.seq_len, window=args.window,
                            n_attention=n_attention, batch_size=args.batch_size,
                            repeats=args.repeats)
        _summarise(group, bound, analysis)
        for row in group.values():
            print(f"[long_range]   {row['method']}: {row.get('s_per_100', float('nan')):.2f} "
                  f"s / 100 seqs {row.get('note', '')}", flush=True)
        rows.extend(group.values())

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    settings.update(start=start, end=end, fast_options=fast_options, model_kwargs=model_kwargs)
    notes = [
        f"ISM of the central {end - start} positions [{start}, {end}) x 3 alternate bases; "
        "random weights (ISM cost does not depend on them); best of `repeats` after a warm-up, "
        "scaled to 100 sequences.",
        "`time in stop layers`: naive row = the share of a whole-model call spent at and after "
        "the stop frontier (a suffix function running exactly the nodes the fast path computes "
        "in full, on M tiled frontier tensors, timed against the whole model on M mutants); "
        "fast row = that suffix time per mutant x the number of mutants / the measured "
        "FastISM time.",
        "`ideal speedup` = whole / suffix time: the most any method that leaves the stop layers "
        "untouched can gain (the fastISM paper's bound for Akita was ~1.7x).",
        "FLOP bound = naive / fast multiply-adds per mutation (`fastism_dist.core.report`).",
    ]
    return common.write_results(args.name, rows, COLUMNS,
                                {"machine": machine, "settings": settings}, out_dir=args.out,
                                title="Long-range model: ISM of the central window",
                                notes=notes)


def _summarise(group, bound, analysis):
    """Speedup, FLOP bound and stop-layer shares, in place."""
    naive, fast = group.get("naive"), group.get("fast")
    for method, row in group.items():
        if "error" in row:
            row["note"] = "FAILED: " + row["error"]
            continue
        if bound.get("bound"):
            row["bound"] = 1.0 if method == "naive" else bound["bound"]
        if naive is not None and "s_per_100" in naive:
            row["speedup"] = naive["s_per_100"] / row["s_per_100"]
            if row.get("bound"):
                row["frac_bound"] = row["speedup"] / row["bound"]
    if "error" in analysis:
        for row in group.values():
            row["note"] = (row.get("note", "") + "; analysis FAILED: " + analysis["error"])
        return
    if not analysis:
        return
    for row in group.values():
        row["ideal_speedup"] = analysis["ideal_speedup"]
        row["analysis"] = analysis
    if naive is not None:
        naive["stop_share"] = analysis["naive_stop_share"]
    if fast is not None and "seconds" in fast:
        stop_s = analysis["suffix_s_per_mutant"] * fast["n_mutations"]
        fast["stop_share"] = min(1.0, stop_s / fast["seconds"])


if __name__ == "__main__":
    for path in main():
        print(path)
