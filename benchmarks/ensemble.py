"""Ensembles on the distributed engine: 16 small CNNs x 256 sequences on 2 workers.

Settings, each on a fresh ``LocalCluster`` of 2 single-threaded worker processes:

* one model of the ensemble alone (the reference rate of a single model);
* ``--ensemble mean`` with groups of 4 models per task (and, with ``--one-group``, all 16 in
  one group);
* ``--ensemble keep`` with groups of 4.

Reported per setting: model-mutations/s of loading the models on the workers and scoring
(over every model: a sequence's mutations count once per model; a single model is loaded when
the run's worker plugin is registered, an ensemble's groups by their tasks), the wall time (cluster start, model loading, scoring), the
model-mutations/s relative to the single model, and the peak resident memory of the workers
(the larger ``ru_maxrss`` of the two, read on the workers after the run). Results go to
``benchmarks/results/ensemble.json`` and ``ensemble.md``.

Run from the repository root::

    python -m benchmarks.ensemble                  # 16 models, 256 sequences of 20 bp
    python -m benchmarks.ensemble --models 4 --n 32 --length 24 --out /tmp/ens
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import local_client, machine_info, write_results  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COLUMNS = [
    ("setting", "setting", ""),
    ("models", "models", "d"),
    ("group_size", "models per task", "d"),
    ("model_mutations", "model-mutations", "d"),
    ("scoring_s", "load + score s", ".1f"),
    ("wall_s", "wall s", ".1f"),
    ("mutations_per_s", "model-mutations/s", ",.0f"),
    ("vs_single", "vs one model", ".2f"),
    ("peak_rss_mb", "peak worker RSS MB", ".0f"),
]


def build_model(length, seed):
    """A small CNN: two conv/relu/pool blocks, a dense layer, 4 sigmoid outputs."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((length, 4), name="sequence")
    h = layers.Conv1D(16, 7, padding="same", activation="relu")(inp)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Conv1D(16, 5, padding="same", activation="relu")(h)
    h = layers.Flatten()(layers.MaxPooling1D(2)(h))
    return keras.Model(inp, layers.Dense(4, activation="sigmoid", name="y")(h))


def write_inputs(directory, n_models, n, length):
    """The models (``m00.keras`` ...) in ``directory/models`` and a FASTA of ``n`` sequences."""
    import numpy as np

    models = Path(directory) / "models"
    models.mkdir(parents=True, exist_ok=True)
    for k in range(n_models):
        build_model(length, seed=k).save(models / f"m{k:02d}.keras")
    rng = np.random.default_rng(0)
    fasta = Path(directory) / "sequences.fa"
    with open(fasta, "w") as fh:
        for i in range(n):
            fh.write(f">seq{i}\n{''.join(np.array(list('ACGT'))[rng.integers(0, 4, length)])}\n")
    return models, str(fasta)


def worker_peak_rss_mb(client):
    """The largest ru_maxrss of the workers of ``client``, in MB."""
    usages = client.run(resource.getrusage, resource.RUSAGE_SELF).values()
    return max(u.ru_maxrss for u in usages) / 1024


def measure(setting, model, fasta, out, workers, **options):
    """One setting on a fresh cluster of ``workers`` single-threaded workers."""
    from fastism_dist.distributed import score

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        with local_client(workers) as client:
            summary = score(model, fasta, out, client=client, progress=False, **options)
            peak = worker_peak_rss_mb(client)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seconds = summary.setup_s + summary.compute_s
    return {"setting": setting, "scoring_s": seconds, "model_mutations": summary.mutations,
            "mutations_per_s": summary.mutations / seconds,
            "wall_s": time.perf_counter() - t0, "peak_rss_mb": peak}


def settings(models_dir, n_models, one_group=False):
    """(name, MODEL argument, models, group size, score options) of every setting."""
    files = sorted(str(p) for p in Path(models_dir).glob("*.keras"))
    small = min(4, n_models)
    rows = [("one model", files[0], 1, 1, {})]
    for mode, group in [("mean", small)] + ([("mean", n_models)] if one_group else []) + [
            ("keep", small)]:
        rows.append((f"{mode}, groups of {group}", str(models_dir), n_models, group,
                     {"ensemble": mode, "group_size": group}))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16, help="models in the ensemble (16)")
    parser.add_argument("--n", type=int, default=256, help="sequences (256)")
    parser.add_argument("--length", type=int, default=20, help="sequence length (20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--chunk-size", type=int, default=32, help="sequences per chunk (32)")
    parser.add_argument("--one-group", action="store_true",
                        help="also score the mean with every model in one group")
    parser.add_argument("--out", help="directory of ensemble.json / ensemble.md "
                                      "(default: benchmarks/results)")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="fastism-ensemble-")
    rows = []
    try:
        models_dir, fasta = write_inputs(tmp, args.models, args.n, args.length)
        for name, model, n_models, group, options in settings(models_dir, args.models, args.one_group):
            row = measure(name, model, fasta, os.path.join(tmp, "out.zarr"), args.workers,
                          chunk_size=args.chunk_size, **options)
            row.update(models=n_models, group_size=group)
            rows.append(row)
            print(f"{name}: {row['mutations_per_s']:,.0f} model-mutations/s, peak worker RSS "
                  f"{row['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        row["vs_single"] = row["mutations_per_s"] / rows[0]["mutations_per_s"]
    meta = {"machine": machine_info(), "settings": vars(args)}
    notes = [
        "model-mutations: mutations x models. vs one model: model-mutations/s over the rate of "
        "one model of the ensemble scored alone, whose short run is dominated by fixed costs "
        "(cluster warm-up, loading, tracing); an ensemble spreads them over more work.",
        "Each setting is a fresh cluster; the peak is the larger ru_maxrss of the workers after "
        "the run. A worker holds one group's models at a time.",
        "Load + score: registering the run's plugin (which loads a single model on every "
        "worker) and the tasks (which load an ensemble's groups, each fast-ISM executor "
        "self-checked against naive ISM once per load).",
    ]
    json_path, md_path = write_results("ensemble", rows, COLUMNS, meta, out_dir=args.out,
                                       title="Ensembles: 16 small CNNs on 2 workers",
                                       notes=notes)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
