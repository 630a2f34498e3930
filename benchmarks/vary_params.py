"""How the fast/naive speedup moves with the architecture (the fastISM paper's Supplementary
Fig. S1): sequence length, number of filters, number of conv blocks and kernel size, one at a
time around a base point, on a simple Basset-like family.

The family is ``fastism_dist.models.basset`` with ``n_blocks`` blocks of Conv1D(``filters``,
``kernel``, same) -> ReLU -> MaxPool(4), then Flatten -> Dense(10): no BatchNorm, no hidden dense
layers, seeded random weights (ISM cost does not depend on them). The paper found the speedup
grows with length, filters and blocks and shrinks with kernel size.

Each point times naive and fast ISM (all 3 alternate bases at every position) on ``--n-seqs``
random sequences, best of ``--repeats`` after one warm-up call (fast ISM after
``FastISM.warm_up`` too, which traces and settles XLA as in Table 1), in this process (one
TensorFlow start for the whole sweep). Writes ``vary_params.json``, ``.md`` and, when matplotlib is
installed, ``vary_params.png`` (speedup and FLOP bound against each parameter).

Run from the repository root::

    python -m benchmarks.vary_params
    python -m benchmarks.vary_params --lengths 500,1000,2000,4000 --n-seqs 2
"""

from __future__ import annotations

import argparse

try:
    from benchmarks import common
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import common

BASE = {"seq_len": 1000, "filters": 64, "n_blocks": 3, "kernel": 11}
SWEEPS = {
    "seq_len": [250, 500, 1000, 2000],
    "filters": [16, 32, 64, 128],
    "n_blocks": [1, 2, 3, 4],
    "kernel": [3, 7, 11, 19],
}
POOL = 4
N_OUTPUTS = 10

COLUMNS = [
    ("param", "varied", ""),
    ("seq_len", "L", ""),
    ("filters", "filters", ""),
    ("n_blocks", "blocks", ""),
    ("kernel", "kernel", ""),
    ("naive_s_per_100", "naive s / 100", ".2f"),
    ("fast_s_per_100", "fast s / 100", ".2f"),
    ("speedup", "speedup", ".2f"),
    ("bound", "FLOP bound", ".1f"),
    ("frac_bound", "% of bound", ".0%"),
]


def build_model(seq_len, filters, n_blocks, kernel, pool=POOL, seed=0):
    """A Basset-like model: ``n_blocks`` x (Conv1D -> ReLU -> MaxPool), Flatten, Dense(10)."""
    from fastism_dist.models import basset

    return basset(seq_len=seq_len, n_outputs=N_OUTPUTS, filters=(filters,) * n_blocks,
                  kernels=(kernel,) * n_blocks, pools=(pool,) * n_blocks, dense=(),
                  dropout=0.0, batch_norm=False, output_activation=None, seed=seed)


def measure_point(seq_len, filters, n_blocks, kernel, n_seqs=4, repeats=3, batch_size=None,
                  fast_options=None, pool=POOL, seed=0):
    """Naive and fast seconds per 100 sequences, speedup and FLOP bound at one point."""
    from fastism_dist import FastISM, NaiveISM

    model = build_model(seq_len, filters, n_blocks, kernel, pool, seed)
    x = common.random_onehot(n_seqs, seq_len, seed=seed + 1)
    row = {}
    for name, ism in (("naive", NaiveISM(model, check=False, batch_size=batch_size)),
                      ("fast", FastISM(model, check=False, batch_size=batch_size,
                                       **(fast_options or {})))):
        if name == "fast":  # tracing and the XLA decision before the timed calls, as in Table 1
            ism.warm_up(x)
        timing = common.best_of(lambda: ism(x), repeats=repeats)
        row[f"{name}_seconds"] = timing["seconds"]
        row[f"{name}_s_per_100"] = timing["seconds"] * 100.0 / n_seqs
    row["speedup"] = row["naive_seconds"] / row["fast_seconds"]
    bound = common.flop_bound(model)
    row.update(bound)
    if bound.get("bound"):
        row["frac_bound"] = row["speedup"] / bound["bound"]
    return row


def sweep_points(sweeps, base):
    """(param, point) for every value of every sweep, the other parameters at ``base``."""
    points = []
    for param, values in sweeps.items():
        for value in values:
            points.append((param, dict(base, **{param: value})))
    return points


def plot(rows, sweeps, path):
    """Speedup (and FLOP bound) against each varied parameter, one panel each; returns path
    or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [p for p in sweeps if any(r["param"] == p for r in rows)]
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3.0), squeeze=False)
    labels = {"seq_len": "sequence length", "filters": "filters per conv",
              "n_blocks": "conv blocks", "kernel": "kernel size"}
    for ax, param in zip(axes[0], params):
        sub = sorted((r for r in rows if r["param"] == param and "speedup" in r),
                     key=lambda r: r[param])
        xs = [r[param] for r in sub]
        ax.plot(xs, [r["speedup"] for r in sub], "o-", label="measured")
        if any(r.get("bound") for r in sub):
            ax.plot(xs, [r.get("bound") for r in sub], "s--", color="grey", label="FLOP bound")
        ax.set_xlabel(labels.get(param, param))
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fast / naive speedup")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    """Parse the command line, run the sweeps, write JSON, markdown and the PNG.

    Returns
    -------
    (Path, Path)
        The JSON and markdown files written (the PNG sits beside them).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for param, flag in (("seq_len", "--lengths"), ("filters", "--filters"),
                        ("n_blocks", "--blocks"), ("kernel", "--kernels")):
        parser.add_argument(flag, dest=param, default=",".join(map(str, SWEEPS[param])),
                            help=f"comma-separated values ('' to skip). Default "
                                 f"{','.join(map(str, SWEEPS[param]))}")
    parser.add_argument("--base", action="append", default=[], metavar="KEY=VALUE",
                        help=f"base point (other parameters while one varies). Default {BASE}")
    parser.add_argument("--pool", type=int, default=POOL, help=f"max-pool size. Default {POOL}")
    parser.add_argument("--n-seqs", type=int, default=4, help="sequences per point. Default 4")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mutations per model call (default: the executor's)")
    parser.add_argument("--fast-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra FastISM keyword argument (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="weights and sequences seed")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="vary_params", help="result file name")
    args = parser.parse_args(argv)

    base = dict(BASE, **common.parse_options(args.base))
    sweeps = {p: common.csv_list(getattr(args, p), int) for p in SWEEPS}
    sweeps = {p: v for p, v in sweeps.items() if v}
    fast_options = common.parse_options(args.fast_option)
    machine = common.machine_info()
    rows, done = [], {}
    for param, point in sweep_points(sweeps, base):
        key = tuple(sorted(point.items()))
        print(f"[vary_params] {param}: {point} ...", flush=True)
        if key not in done:
            try:
                done[key] = measure_point(**point, n_seqs=args.n_seqs, repeats=args.repeats,
                                          batch_size=args.batch_size,
                                          fast_options=fast_options, pool=args.pool,
                                          seed=args.seed)
            except Exception as err:  # e.g. a length too short for the pools
                done[key] = {"error": f"{type(err).__name__}: {err}"}
        row = dict(param=param, **point, **done[key])
        print(f"[vary_params]   speedup {row.get('speedup', float('nan')):.2f} "
              f"{row.get('error', '')}", flush=True)
        rows.append(row)

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    settings.update(base=base, sweeps=sweeps, fast_options=fast_options)
    notes = [
        f"Basset-like family: blocks x (Conv1D(filters, kernel, same) -> ReLU -> MaxPool("
        f"{args.pool})), Flatten, Dense({N_OUTPUTS}); random weights. One parameter varies at "
        f"a time around {base}.",
        f"N = {args.n_seqs} random sequences per point, all 3 alternate bases at every "
        "position, best of `repeats` after a warm-up call (fast ISM after `FastISM.warm_up` "
        "too: tracing and the XLA decision), scaled to 100 sequences.",
        "FLOP bound = naive / fast multiply-adds per mutation (`fastism_dist.core.report`).",
    ]
    json_path, md_path = common.write_results(
        args.name, rows, COLUMNS, {"machine": machine, "settings": settings}, out_dir=args.out,
        title="Speedup against architecture parameters (paper Supp. Fig. S1)", notes=notes)
    png = plot(rows, sweeps, md_path.with_suffix(".png"))
    if png is None:
        print("[vary_params] matplotlib is not installed: no PNG (pip install matplotlib)")
    else:
        with open(md_path, "a") as fh:
            fh.write(f"\n![speedup against parameters]({png.name})\n")
    return json_path, md_path


if __name__ == "__main__":
    for path in main():
        print(path)
