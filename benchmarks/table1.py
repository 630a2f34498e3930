"""Table 1 of the fastISM paper (Nair et al. 2022) on this machine: ISM and attribution methods
on Basset, Factorized Basset and BPNet at 1 kb and 2 kb.

Methods (``--methods``):

- ``naive``     ``fastism_dist.NaiveISM``: every mutant through the whole model, batched.
- ``fast``      ``fastism_dist.FastISM`` (``--fast-option key=value`` passes executor switches),
  warmed up with ``FastISM.warm_up`` (tracing and the XLA decision) before the timed calls, as
  the engine's workers are; ``fast_n1`` is the same on the first sequence alone (N = 1).
- ``original``  the PyPI ``fastism`` 0.5.1 package (needs ``--original-venv``, built by
  ``benchmarks/make_fastism_venv.sh``), its per-position model call wrapped in ``tf.function``;
  ``original_shipped`` is the package exactly as shipped (one eager call per position).
- ``gradxinput`` Gradient x Input with ``tf.GradientTape``, batched over sequences.
- ``ig``        Integrated Gradients, 50 steps, all-zero reference.
- ``deepshap``  DeepSHAP (``shap.DeepExplainer``) with 10 shuffled references per sequence;
  runs under ``--shap-python`` (default ``benchmarks/venv-shap/bin/python`` if it exists, else
  this interpreter), which needs ``shap``.

Every ISM method computes all 3 alternate bases at every position (4 substitutions, the
identity edit skipped): ``3 * L`` mutants per sequence. The attribution methods run with respect
to one scalar: output task 0 of Basset / Factorized Basset and BPNet's count output for task 0;
``s_per_100_all_outputs`` multiplies their time by the number of scalar outputs, which ISM
gets in the same pass.

Weights are random (seeded Keras initialisers plus ``randomize_batch_norm``): the cost of ISM
does not depend on the weights' values, only on the architecture.

Run from the repository root::

    python -m benchmarks.table1                       # all models, 1 kb and 2 kb, naive/fast/...
    python -m benchmarks.table1 --models basset --lengths 1000 --methods naive,fast --n-seqs 4
    python -m benchmarks.table1 --original-venv benchmarks/venv-fastism --methods naive,fast,original
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks import common
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import common

MODELS = ("basset", "factorized_basset", "bpnet")
ISM_METHODS = ("naive", "fast", "fast_n1", "original", "original_shipped")
ALL_METHODS = ISM_METHODS + ("gradxinput", "ig", "deepshap")
DEFAULT_METHODS = ("naive", "fast", "gradxinput", "ig")
IG_STEPS = 50
SHAP_REFERENCES = 10

#: Tiny versions of the three architectures, for smoke tests (``--tiny``).
TINY = {
    "basset": dict(filters=[8, 8, 8], kernels=[5, 3, 3], pools=[2, 2, 2], dense=[16, 16],
                   n_outputs=3),
    "factorized_basset": dict(blocks=[[[8, 3], [8, 3]], [[8, 3]], [[8, 3]]], pools=[2, 2, 2],
                              dense=[16], n_outputs=3),
    "bpnet": dict(filters=8, n_dilated=3, first_kernel=5, profile_kernel=5),
}

TITLE = "Table 1: ISM and attribution methods"

NOTES = [
    "Times are the best of `repeats` runs after one warm-up, on N random one-hot sequences, "
    "scaled to 100 sequences (`s / 100 seqs` = best seconds x 100 / N).",
    "ISM methods compute all 3 alternate bases at every position (3 L mutants per sequence); "
    "the attribution methods explain one scalar (Basset: output task 0; BPNet: counts task "
    "0). `s / 100, all outputs` = their time x the number of scalar outputs, which one ISM "
    "run covers.",
    "Weights are random (seeded initialisers + randomized BatchNorm statistics): ISM cost "
    "does not depend on the weights.",
    "FLOP bound = naive / fast multiply-adds per mutation from `fastism_dist.core.report."
    "plan_report` (naive without the taps of a convolution that fall in its padding); "
    "`% of bound` = measured speedup / bound.",
    "`first call s` = building the executor plus the warm-up call (plan, tracing, first "
    "run) on the N sequences.",
    "`peak RSS MB` = the process's peak resident memory (each method in a fresh process "
    "with --isolate, TensorFlow included); `Δ peak MB` = peak minus the RSS before the "
    "method's first call.",
    "`original` = PyPI fastism 0.5.1 under tf-keras (same TF version), its per-position "
    "model call wrapped in tf.function; `original_shipped` = as shipped (eager). It batches "
    "over sequences only: one model call per position and base for all N sequences.",
]

COLUMNS = [
    ("model", "model", ""),
    ("seq_len", "L", ""),
    ("method", "method", ""),
    ("n_seqs", "N", ""),
    ("s_per_100", "s / 100 seqs", ".2f"),
    ("speedup", "speedup vs naive", ".2f"),
    ("cpu_s_per_100", "CPU s / 100 seqs", ".2f"),
    ("cpu_speedup", "CPU-time speedup", ".2f"),
    ("bound", "FLOP bound", ".1f"),
    ("frac_bound", "% of bound", ".0%"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("peak_delta_mb", "Δ peak MB", ".0f"),
    ("first_call_s", "first call s", ".1f"),
    ("s_per_100_all_outputs", "s / 100, all outputs", ".3g"),
    ("note", "note", ""),
]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def build_model(name, seq_len, model_kwargs=None, seed=0):
    """Build a reference architecture with seeded random weights and random BatchNorm stats.

    Parameters
    ----------
    name : str
        "basset", "factorized_basset" or "bpnet" (any key of ``fastism_dist.models.build``).
    seq_len : int
        Input length ``L``.
    model_kwargs : dict, optional
        Extra builder arguments (sizes), e.g. ``TINY[name]``.
    seed : int
        Seed of the weights and of the BatchNormalization statistics. Default is 0.

    Returns
    -------
    keras.Model
    """
    from fastism_dist import models

    model = models.build(name, seq_len=seq_len, seed=seed, **(model_kwargs or {}))
    return models.randomize_batch_norm(model, seed)


def scalar_target(model):
    """The scalar the attribution methods explain: (output index, task index, description).

    The first output of shape (B, T) (Basset's tasks, BPNet's counts), task 0; a model with
    only profile outputs gets the first element of output 0.
    """
    for k, out in enumerate(model.outputs):
        if len(out.shape) == 2:
            return k, 0, f"{out._keras_history.operation.name}[:, 0]"
    return 0, 0, f"{model.outputs[0]._keras_history.operation.name}[:, 0, ...0]"


def n_scalar_outputs(model):
    """Number of scalars the model outputs per sequence (all outputs, all positions)."""
    total = 0
    for out in model.outputs:
        size = 1
        for dim in out.shape[1:]:
            size *= int(dim)
        total += size
    return total


# ---------------------------------------------------------------------------------------------
# One measurement (runs in a fresh subprocess with --isolate)
# ---------------------------------------------------------------------------------------------

def measure(model, seq_len, method, n_seqs=10, repeats=3, batch_size=None, model_kwargs=None,
            fast_options=None, seed=0):
    """Time one (model, length, method) on ``n_seqs`` random one-hot sequences.

    Returns
    -------
    dict
        ``seconds`` (best of ``repeats`` after one warm-up run on the same sequences: a
        smaller warm-up would leave a retrace for another batch shape in the timed runs),
        ``times``,
        ``s_per_100``, ``setup_s`` (building the executor), ``peak_rss_mb``, ``peak_delta_mb``,
        ``n_mutations``, ``n_scalar_outputs``, ``note``.
    """
    keras_model = build_model(model, seq_len, model_kwargs, seed)
    x = common.random_onehot(n_seqs, seq_len, seed=seed + 1)
    t0 = time.perf_counter()
    run, warmup, note = _method(method, keras_model, x, batch_size, fast_options or {})
    setup_s = time.perf_counter() - t0
    timing = common.best_of(run, repeats=repeats, warmup=warmup)
    result = {
        "seconds": timing["seconds"],
        "times": timing["times"],
        "warmup_s": timing["warmup_s"],
        "s_per_100": timing["seconds"] * 100.0 / n_seqs,
        "cpu_s_per_100": timing["cpu_seconds"] * 100.0 / n_seqs,
        "setup_s": setup_s,
        "peak_delta_mb": timing["peak_delta_mb"],
        "peak_rss_mb": common.peak_rss_mb(),
        "n_mutations": int(n_seqs * seq_len * 3) if method in ISM_METHODS else None,
        "n_scalar_outputs": n_scalar_outputs(keras_model),
        "note": note,
    }
    if method not in ISM_METHODS:
        result["s_per_100_all_outputs"] = result["s_per_100"] * result["n_scalar_outputs"]
    return result


def _method(method, model, x, batch_size, fast_options):
    """(run, warmup, note) for one method on sequences ``x`` (N, L, C); warmup None = run."""
    if method == "naive":
        from fastism_dist import NaiveISM

        ism = NaiveISM(model, check=False, batch_size=batch_size)
        return (lambda: ism(x)), None, f"{ism.batch_size} mutants / call"
    if method == "fast":
        from fastism_dist import FastISM

        ism = FastISM(model, check=False, batch_size=batch_size, **fast_options)
        ism.warm_up(x)
        note = f"{ism.batch_size} mutations / call, XLA {'on' if ism.xla is True else 'off'}"
        if fast_options:
            note += "; " + ", ".join(f"{k}={v}" for k, v in sorted(fast_options.items()))
        return (lambda: ism(x)), None, note
    if method in ("gradxinput", "ig"):
        return _gradient_method(method, model, x, batch_size or 256)
    if method == "deepshap":
        return _deepshap(model, x)
    raise ValueError(f"unknown method {method!r}; choose from {ALL_METHODS}")


def _gradient_method(method, model, x, batch_size):
    import numpy as np
    import tensorflow as tf

    out_index, task, target = scalar_target(model)
    multi = len(model.outputs) > 1

    def scalar(xb):
        out = model(xb, training=False)
        out = out[out_index] if multi else out
        return tf.reshape(out, (tf.shape(out)[0], -1))[:, task]

    @tf.function(reduce_retracing=True)
    def grad_x_input(xb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            y = scalar(xb)
        return tape.gradient(y, xb) * xb

    @tf.function(reduce_retracing=True)
    def integrated_gradients(xb):
        n = tf.shape(xb)[0]
        alphas = (tf.range(IG_STEPS, dtype=xb.dtype) + 1.0) / IG_STEPS  # reference: all zeros
        path = alphas[None, :, None, None] * xb[:, None]  # (n, steps, L, C)
        flat = tf.reshape(path, (-1,) + tuple(xb.shape[1:]))
        with tf.GradientTape() as tape:
            tape.watch(flat)
            y = scalar(flat)
        grads = tf.reshape(tape.gradient(y, flat), (n, IG_STEPS) + tuple(xb.shape[1:]))
        return tf.reduce_mean(grads, axis=1) * xb

    if method == "gradxinput":
        fn, per_call, note = grad_x_input, batch_size, f"w.r.t. {target}; {batch_size} seqs / call"
    else:
        per_call = max(1, batch_size // IG_STEPS)
        fn = integrated_gradients
        note = (f"w.r.t. {target}; {IG_STEPS} steps, zero reference; "
                f"{per_call * IG_STEPS} rows / call")

    def run(xs=x):
        return [np.asarray(fn(tf.constant(xs[i:i + per_call])))
                for i in range(0, len(xs), per_call)]

    return run, None, note


def _deepshap(model, x):
    """DeepSHAP via ``shap.DeepExplainer`` on a one-unit copy of the target output layer."""
    import keras
    import numpy as np
    import shap
    from shap.explainers._deep import deep_tf

    # Dilated Conv1D lowers to SpaceToBatchND / BatchToSpaceND, which shap has no rule for; both
    # only move elements around (linear), so the plain gradient (passthrough) is the exact rule.
    for op in ("SpaceToBatchND", "BatchToSpaceND"):
        deep_tf.op_handlers.setdefault(op, deep_tf.passthrough)
    out_index, task, target = scalar_target(model)
    layer = model.outputs[out_index]._keras_history.operation
    if not isinstance(layer, keras.layers.Dense):
        raise ValueError(f"deepshap needs a Dense target layer, {layer.name} is "
                         f"{type(layer).__name__}")
    # shap explains the last layer's output: give it a one-unit copy of the target column.
    head = keras.layers.Dense(1, activation=layer.activation, name="shap_target")
    y = head(layer.input)
    kernel, bias = layer.get_weights()
    head.set_weights([kernel[:, task:task + 1], bias[task:task + 1]])
    sub = keras.Model(model.inputs, y)
    rng = np.random.default_rng(0)

    def references(_):
        # shap passes the inputs being explained; return SHAP_REFERENCES position shuffles of
        # the current sequence (the paper used dinucleotide shuffles: the same cost).
        seq = np.asarray(_[0] if isinstance(_, list) else _)
        seq = seq.reshape(seq.shape[-2:])
        return np.stack([seq[rng.permutation(len(seq))] for _ in range(SHAP_REFERENCES)])

    explainer = shap.DeepExplainer(sub, references)

    def run(xs=x):
        return explainer.shap_values(xs, check_additivity=False)

    note = f"w.r.t. {target}; {SHAP_REFERENCES} shuffled references; shap {shap.__version__}"
    return run, None, note


# ---------------------------------------------------------------------------------------------
# The original fastISM (runs benchmarks/original_fastism.py in its own virtual environment)
# ---------------------------------------------------------------------------------------------

_ORIGINAL_CONFIG_KEYS = {
    "Conv1D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
               "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "Activation": ("activation",),
    "MaxPooling1D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling1D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling1D": ("data_format", "keepdims"),
    "GlobalMaxPooling1D": ("data_format", "keepdims"),
    "Flatten": ("data_format",),
    "Dropout": ("rate",),
    "Add": (),
    "Concatenate": ("axis",),
    "ZeroPadding1D": ("padding",),
    "Cropping1D": ("cropping",),
}


def architecture_spec(model):
    """A JSON description of a Keras 3 model's layers, for rebuilding it with tf-keras.

    Returns
    -------
    dict
        ``{"input": {"name", "shape"}, "layers": [{"name", "class", "config", "inputs"}],
        "outputs": [layer names]}``; each layer has one output; weights travel separately.
    """
    from fastism_dist.core.graph import read_graph

    graph = read_graph(model)
    names = {tid: t.name for tid, t in zip(graph.input_ids, model.inputs)}
    layers = []
    for node in graph.nodes:
        keys = _ORIGINAL_CONFIG_KEYS.get(node.class_name)
        if keys is None or len(node.out_ids) != 1:
            raise ValueError(f"the original-fastISM runner cannot rebuild layer {node.name!r} "
                             f"({node.class_name})")
        config = node.op.get_config()
        layers.append({"name": node.name, "class": node.class_name,
                       "config": {k: config[k] for k in keys if k in config},
                       "inputs": [names[t] for t in node.arg_ids]})
        names[node.out_ids[0]] = node.name
    (seq,) = model.inputs
    return {"input": {"name": seq.name, "shape": list(seq.shape[1:])}, "layers": layers,
            "outputs": [names[t] for t in graph.output_ids]}


def run_original(model_name, seq_len, mode, venv, n_seqs, repeats, model_kwargs=None, seed=0,
                 check_positions=16, timeout=None):
    """Time the original fastISM 0.5.1 on the same architecture, weights and sequences.

    The model is rebuilt with tf-keras from ``architecture_spec`` and given this model's
    weights; the runner checks that its reference outputs match Keras 3's and that its ISM
    outputs match ``NaiveISM`` on the first sequence at ``check_positions`` positions.

    Parameters
    ----------
    mode : str
        "wrapped" (model call in ``tf.function``) or "shipped" (as the package ships).
    venv : str
        The virtual environment built by ``make_fastism_venv.sh``.
    """
    import numpy as np

    from fastism_dist import NaiveISM

    model = build_model(model_name, seq_len, model_kwargs, seed)
    x = common.random_onehot(n_seqs, seq_len, seed=seed + 1)
    with tempfile.TemporaryDirectory(prefix="fastism-original-") as tmp:
        tmp = Path(tmp)
        weights = {}
        for layer in model.layers:
            for i, w in enumerate(layer.get_weights()):
                weights[f"{layer.name}/{i}"] = w
        np.savez(tmp / "weights.npz", **weights)
        np.save(tmp / "x.npy", x)
        ref = model.predict_on_batch(x)
        ref = ref if isinstance(ref, (list, tuple)) else [ref]
        np.savez(tmp / "ref.npz", *[np.asarray(r) for r in ref])
        check_positions = min(check_positions, seq_len)
        naive = NaiveISM(model, end=check_positions, check=False)(x[:1])
        np.savez(tmp / "check.npz", *naive.mut)  # each (1, P, 4, *out)
        spec = {"architecture": architecture_spec(model), "dir": str(tmp), "mode": mode,
                "repeats": repeats}
        python = Path(venv) / "bin" / "python"
        if not python.exists():
            return {"error": f"no interpreter at {python}: run benchmarks/make_fastism_venv.sh"}
        result = common.run_isolated(None, spec, timeout=timeout, python=str(python),
                                     script=common.REPO_ROOT / "benchmarks" / "original_fastism.py",
                                     env={"TF_USE_LEGACY_KERAS": "1"})
    if "seconds" in result:
        result["s_per_100"] = result["seconds"] * 100.0 / n_seqs
        if "cpu_seconds" in result:
            result["cpu_s_per_100"] = result["cpu_seconds"] * 100.0 / n_seqs
        result["n_mutations"] = int(n_seqs * seq_len * 3)
    return result


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def default_shap_python():
    candidate = common.REPO_ROOT / "benchmarks" / "venv-shap" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def main(argv=None):
    """Parse the command line, run every (model, length, method), write the result files.

    Returns
    -------
    (Path, Path)
        The JSON and markdown files written.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--lengths", default="1000,2000", help="comma-separated input lengths")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, from {','.join(ALL_METHODS)}. Default: "
                             f"{','.join(DEFAULT_METHODS)}, plus original with --original-venv")
    parser.add_argument("--n-seqs", type=int, default=10,
                        help="sequences timed per method (times are scaled to 100). Default 10")
    parser.add_argument("--naive-n-seqs", type=int, default=None,
                        help="sequences for naive ISM (the slowest; times are scaled to 100). "
                             "Default: --n-seqs")
    parser.add_argument("--original-n-seqs", type=int, default=32,
                        help="sequences for the original fastISM, all in one call: it batches "
                             "over sequences only (one model call per position and base), so "
                             "this is its batch size. Default 32 (its fastest configuration on this CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mutations per model call for naive/fast (default: the "
                             "executor's), sequences x steps per call for gradients")
    parser.add_argument("--fast-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra FastISM keyword argument (repeatable)")
    parser.add_argument("--original-venv", default=None,
                        help="virtual environment with fastism 0.5.1 (make_fastism_venv.sh)")
    parser.add_argument("--shap-python", default=None,
                        help="interpreter with shap for deepshap (default: "
                             "benchmarks/venv-shap/bin/python if present, else this one)")
    parser.add_argument("--seed", type=int, default=0, help="weights and sequences seed")
    parser.add_argument("--tiny", action="store_true", help="tiny architectures (smoke tests)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="run each (model, method) in a fresh process (clean peak RSS)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="table1", help="result file name. Default table1")
    args = parser.parse_args(argv)

    models = common.csv_list(args.models)
    lengths = common.csv_list(args.lengths, int)
    methods = common.csv_list(args.methods) if args.methods else list(DEFAULT_METHODS) + (
        ["original"] if args.original_venv else [])
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {ALL_METHODS}")
    if any(m.startswith("original") for m in methods) and not args.original_venv:
        parser.error("the original methods need --original-venv (make_fastism_venv.sh)")
    fast_options = common.parse_options(args.fast_option)
    shap_python = args.shap_python or default_shap_python()
    original_n = args.original_n_seqs

    machine = common.machine_info()
    rows = []
    for model_name in models:
        model_kwargs = TINY.get(model_name, {}) if args.tiny else {}
        for seq_len in lengths:
            keras_model = build_model(model_name, seq_len, model_kwargs, args.seed)
            bound = common.flop_bound(keras_model)
            group = []
            for method in methods:
                print(f"[table1] {model_name} L={seq_len} {method} ...", flush=True)
                if method.startswith("original"):
                    mode = "shipped" if method == "original_shipped" else "wrapped"
                    result = run_original(model_name, seq_len, mode, args.original_venv,
                                          original_n, args.repeats, model_kwargs, args.seed,
                                          timeout=args.timeout)
                    result["n_seqs"] = original_n
                else:
                    n_seqs = {"naive": args.naive_n_seqs or args.n_seqs,
                              "fast_n1": 1}.get(method, args.n_seqs)
                    kwargs = dict(model=model_name, seq_len=seq_len,
                                  method="fast" if method == "fast_n1" else method,
                                  n_seqs=n_seqs, repeats=args.repeats,
                                  batch_size=args.batch_size, model_kwargs=model_kwargs,
                                  fast_options=fast_options if method.startswith("fast") else None,
                                  seed=args.seed)
                    python = shap_python if method == "deepshap" else None
                    if args.isolate or python not in (None, sys.executable):
                        result = common.run_isolated("benchmarks.table1:measure", kwargs,
                                                     timeout=args.timeout, python=python)
                    else:
                        try:
                            result = measure(**kwargs)
                        except Exception as err:  # keep the other rows
                            result = {"error": f"{type(err).__name__}: {err}"}
                    result["n_seqs"] = n_seqs
                row = {"model": model_name, "seq_len": seq_len, "method": method, **result}
                if "error" in row:
                    row["note"] = "FAILED: " + row["error"]
                    print(f"[table1]   {row['note']}", flush=True)
                else:
                    print(f"[table1]   {row['s_per_100']:.2f} s / 100 seqs", flush=True)
                group.append(row)
            for row in group:
                if "setup_s" in row and "warmup_s" in row:
                    row["first_call_s"] = row["setup_s"] + row["warmup_s"]
            add_ratios(group, bound)
            rows.extend(group)
            del keras_model

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    settings.update(methods=methods, fast_options=fast_options, original_n_seqs=original_n)
    return common.write_results(args.name, rows, COLUMNS,
                                {"machine": machine, "settings": settings}, out_dir=args.out,
                                title=TITLE, notes=NOTES)


def add_ratios(group, bound):
    """Speedup vs naive, the FLOP bound and the fraction of it reached, in place."""
    naive = next((r for r in group if r["method"] == "naive" and "s_per_100" in r), None)
    for row in group:
        row.update({k: v for k, v in bound.items() if k != "bound"})
        if row["method"] in ISM_METHODS and bound.get("bound"):
            row["bound"] = 1.0 if row["method"] == "naive" else bound["bound"]
        if naive is not None and "s_per_100" in row:
            row["speedup"] = naive["s_per_100"] / row["s_per_100"]
            if row.get("bound") and row["method"] in ISM_METHODS:
                row["frac_bound"] = row["speedup"] / row["bound"]
        if naive is not None and row.get("cpu_s_per_100") and naive.get("cpu_s_per_100"):
            row["cpu_speedup"] = naive["cpu_s_per_100"] / row["cpu_s_per_100"]


if __name__ == "__main__":
    for path in main():
        print(path)
