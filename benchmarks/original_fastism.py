"""Time the original fastISM (PyPI ``fastism`` 0.5.1, Nair et al. 2022) on one model.

Runs INSIDE ``benchmarks/venv-fastism`` (built by ``make_fastism_venv.sh``), under tf-keras:
``benchmarks/table1.py`` starts it as ``venv-fastism/bin/python benchmarks/original_fastism.py
SPEC_JSON`` with ``TF_USE_LEGACY_KERAS=1``. ``SPEC_JSON`` holds:

- ``architecture``: the model as a list of layers (class, Keras config subset, input layer
  names; see ``table1.architecture_spec``), rebuilt here layer by layer with tf-keras;
- ``dir``: a folder with ``weights.npz`` (``"<layer>/<i>"`` -> array, the Keras 3 model's
  weights), ``x.npy`` (the sequences), ``ref.npz`` (Keras 3's outputs on them) and
  ``check.npz`` (``NaiveISM`` outputs on the first sequence at its first P positions);
- ``mode``: ``"wrapped"`` runs the per-position model call of fastism in ``tf.function``
  (``reduce_retracing``; as shipped it is one eager call per position), or
  ``"shipped"`` leaves the package as it is;
- ``repeats``: timed repeats after one warm-up run.

fastism 0.5.1 substitutes one vector at every position per call (``replace_with``), so ISM of
all alternate bases is four calls, one per base, each skipping the sequences whose base at that
position already is that base. Its start-up self-check is skipped (``test_correctness=False``:
80-155 s on a 2-core CPU, and it rejects BPNet over float32 round-off); instead the outputs are
compared with ``check.npz`` and reported as ``ism_max_abs_diff``.

Prints one JSON line (see ``common.RESULT_MARKER``): ``seconds`` (best), ``times``,
``setup_s``, ``peak_rss_mb``, ``peak_delta_mb``, ``ref_max_abs_diff``, ``ism_max_abs_diff``,
versions and ``note``.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}


def build_tf_keras(architecture, weights):
    """Rebuild a model described by ``table1.architecture_spec`` with tf-keras layers."""
    import tensorflow as tf

    keras2 = tf.keras
    seq = architecture["input"]
    inp = keras2.Input(shape=tuple(seq["shape"]), name=seq["name"])
    tensors = {seq["name"]: inp}
    built = []
    for spec in architecture["layers"]:
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
        layer = getattr(keras2.layers, spec["class"])(name=spec["name"], **config)
        args = [tensors[name] for name in spec["inputs"]]
        tensors[spec["name"]] = layer(args if spec["class"] in MERGE_LAYERS else args[0])
        built.append(layer)
    outputs = []
    for name in architecture["outputs"]:
        out = tensors[name]
        if len(out.shape) == 3:
            # fastism 0.5.1 returns only the recomputed window of an output that is still
            # spatial (e.g. BPNet's Conv1D profile head) and then fails to store it. Like the
            # paper's BPNet (Reshape -> Conv2DTranspose -> Flatten), end it with an identity
            # Reshape: a layer fastism treats as a stop, so it assembles the full output.
            out = keras2.layers.Reshape(tuple(out.shape[1:]), name=f"{name}_full")(out)
        outputs.append(out)
    model = keras2.Model(inp, outputs if len(outputs) > 1 else outputs[0])
    for layer in built:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(n)])
    return model


def main(spec):
    import numpy as np
    import tensorflow as tf

    import fastism

    folder = spec["dir"]
    weights = dict(np.load(os.path.join(folder, "weights.npz")))
    x = np.load(os.path.join(folder, "x.npy"))
    ref = list(np.load(os.path.join(folder, "ref.npz")).values())
    check = list(np.load(os.path.join(folder, "check.npz")).values())

    model = build_tf_keras(spec["architecture"], weights)
    ours = model(x, training=False)
    ours = ours if isinstance(ours, list) else [ours]
    ref_diff = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(ours, ref))

    t0 = time.perf_counter()
    ism = fastism.FastISM(model, test_correctness=False)
    if spec["mode"] == "wrapped":
        fast_model = ism.fast_ism_model
        ism.run_model = tf.function(lambda inputs: fast_model(inputs, training=False),
                                    reduce_retracing=True)
    setup_s = time.perf_counter() - t0

    channels = x.shape[-1]
    bases = [[float(v) for v in row] for row in np.eye(channels)]  # a list, not an array
    xt = tf.constant(x)

    def run(batch=xt):
        return [ism(batch, replace_with=base) for base in bases]

    # Exactness on the first sequence against NaiveISM (Keras 3) at the checked positions.
    outs = run(xt[:1])
    n_pos = check[0].shape[1]
    ism_diff = 0.0
    for c, out in enumerate(outs):
        out = out if isinstance(out, list) else [out]
        for k, arr in enumerate(out):
            ism_diff = max(ism_diff, float(np.max(np.abs(
                np.asarray(arr)[0, :n_pos] - check[k][0, :, c]))))

    timing = common.best_of(run, repeats=spec.get("repeats", 3))
    import tf_keras

    return {
        "seconds": timing["seconds"],
        "cpu_seconds": timing["cpu_seconds"],
        "times": timing["times"],
        "warmup_s": timing["warmup_s"],
        "setup_s": setup_s,
        "peak_rss_mb": common.peak_rss_mb(),
        "peak_delta_mb": timing["peak_delta_mb"],
        "ref_max_abs_diff": ref_diff,
        "ism_max_abs_diff": ism_diff,
        "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                     "fastism": getattr(fastism, "__version__", "0.5.1")},
        "note": (f"fastism 0.5.1 ({spec['mode']}), tf-keras {tf_keras.__version__}, batch = "
                 f"{len(x)} seqs; ref diff {ref_diff:.1e}, ISM diff {ism_diff:.1e}"),
    }


if __name__ == "__main__":
    common.print_result(main(json.loads(sys.argv[1])))
