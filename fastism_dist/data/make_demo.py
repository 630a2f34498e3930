"""Make the bundled demo: a small CNN that detects AP-1, HNF4A and CTCF motifs.

Run once by hand (never in CI, never at import)::

    pip install -e ".[demo-train]"        # pyjaspar: the JASPAR matrices, from its bundled SQLite db
    python fastism_dist/data/make_demo.py

Writes, beside this script:

* ``demo_model.keras``   the trained model, input ``(200, 4)`` one-hot ACGT, output ``motifs``
  of shape ``(3,)``: sigmoid probabilities of AP-1, HNF4A and CTCF being present;
* ``demo_model.tasks.json``  the names of those three tasks, ``{"motifs": [...]}``;
* ``demo_sequences.fa``  64 held-back sequences (``seq0000`` ... ``seq0063``);
* ``demo_truth.tsv``     the planted motifs of those sequences (name, motif, start, end, strand);
* ``demo_metrics.json``  held-out accuracy / AUC per motif and the ISM motif-recovery rate.

Everything is drawn from one seeded generator and trained with fixed seeds and deterministic
ops, so a rerun on the same software reproduces the files (to float round-off across CPUs).

Sequences: i.i.d. background of length 200 with GC content 0.42; 0, 1 or 2 motif instances of
distinct factors (probabilities 0.25 / 0.45 / 0.30), each sampled base by base from its JASPAR
position frequency matrix, at a random non-overlapping position on a random strand. About a third
of the AP-1 and HNF4A instances so sampled score no higher (log-odds against the background) than
the top 1e-4 of random background windows, so no model could see them; instances are therefore
redrawn until their score reaches that background quantile. The label of a sequence is, per
factor, whether an instance was planted.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SEED = 20220401
LENGTH = 200
GC = 0.42
ALPHABET = "ACGT"
JASPAR_RELEASE = "JASPAR2024"
# label, JASPAR matrix id (the current version of MA0099, MA0114, MA0139 in JASPAR2024)
MOTIFS = (("AP-1", "MA0099.4"), ("HNF4A", "MA0114.5"), ("CTCF", "MA0139.2"))
N_MOTIFS_P = (0.25, 0.45, 0.30)  # probability of planting 0, 1, 2 instances
BACKGROUND_TAIL = 1e-4  # planted instances score at least this upper quantile of background
N_TRAIN = 60000
N_VALID = 4000
N_TEST = 4000
N_DEMO = 64
EPOCHS = 10
BATCH = 128
OUTPUT_NAME = "motifs"
HERE = os.path.dirname(os.path.abspath(__file__))


def jaspar_pfms(release=JASPAR_RELEASE):
    """Position frequency matrices of ``MOTIFS`` from pyjaspar's bundled database (offline).

    Returns
    -------
    dict of str to ndarray of shape (k, 4)
        Label -> probabilities of A, C, G, T at each of the motif's k positions.
    """
    try:
        from pyjaspar import jaspardb
    except ImportError:
        sys.exit("make_demo.py needs pyjaspar: pip install -e '.[demo-train]'")
    db = jaspardb(release=release)
    pfms = {}
    for label, matrix_id in MOTIFS:
        motif = db.fetch_motif_by_id(matrix_id)
        counts = np.array([motif.counts[b] for b in ALPHABET], dtype=np.float64).T  # (k, 4)
        counts += 0.1  # pseudocount: no base is impossible
        pfms[label] = counts / counts.sum(axis=1, keepdims=True)
    return pfms


def background_probs(gc=GC):
    """Probabilities of A, C, G, T in the background."""
    return np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])


def sample_background(rng, n, length=LENGTH, gc=GC):
    """Integer-coded (0..3 = ACGT) i.i.d. background, shape (n, length)."""
    return rng.choice(4, size=(n, length), p=background_probs(gc)).astype(np.int8)


def log_odds(pfm, gc=GC):
    """(k, 4) log2 odds of the PFM against the background."""
    return np.log2(pfm / background_probs(gc))


def score_threshold(rng, pfm, tail=BACKGROUND_TAIL, n=400_000):
    """The upper ``tail`` quantile of the log-odds score of random background k-mers."""
    k = len(pfm)
    codes = sample_background(rng, n, length=k)
    scores = log_odds(pfm)[np.arange(k), codes].sum(axis=1)
    return float(np.quantile(scores, 1 - tail))


def sample_instance(rng, pfm, threshold=-np.inf):
    """One motif instance drawn position by position from a (k, 4) PFM, as codes (k,).

    Redrawn until its log-odds score is at least ``threshold``.
    """
    lo = log_odds(pfm)
    while True:
        u = rng.random(len(pfm))
        site = np.minimum((u[:, None] > np.cumsum(pfm, axis=1)).sum(axis=1), 3).astype(np.int8)
        if lo[np.arange(len(pfm)), site].sum() >= threshold:
            return site


def plant(rng, codes, pfms, thresholds):
    """Plant 0-2 motif instances of distinct factors into each row of ``codes`` in place.

    Returns
    -------
    labels : ndarray of shape (n, 3), float32
    truth : list of (row, label, start, end, strand)
    """
    labels_all = [label for label, _ in MOTIFS]
    n, length = codes.shape
    labels = np.zeros((n, len(MOTIFS)), dtype=np.float32)
    truth = []
    for row in range(n):
        k = rng.choice(3, p=N_MOTIFS_P)
        chosen = rng.choice(len(MOTIFS), size=k, replace=False)
        taken = []
        for j in sorted(chosen):
            pfm = pfms[labels_all[j]]
            w = len(pfm)
            for _ in range(1000):
                start = int(rng.integers(0, length - w + 1))
                if all(start + w <= a or b <= start for a, b in taken):
                    break
            site = sample_instance(rng, pfm, thresholds[labels_all[j]])
            strand = "+" if rng.random() < 0.5 else "-"
            if strand == "-":
                site = (3 - site)[::-1]  # reverse complement: A<->T, C<->G
            codes[row, start:start + w] = site
            taken.append((start, start + w))
            labels[row, j] = 1.0
            truth.append((row, labels_all[j], start, start + w, strand))
    return labels, truth


def one_hot_codes(codes):
    """(n, L) codes -> (n, L, 4) float32 one-hot."""
    return np.eye(4, dtype=np.float32)[codes]


def build_model():
    """conv 32 k15 relu -> maxpool 4 -> conv 32 k7 relu -> maxpool 4 -> dense 32 -> dense 3."""
    import keras

    x_in = keras.Input(shape=(LENGTH, 4), name="sequence")
    x = keras.layers.Conv1D(32, 15, padding="same", activation="relu", name="conv1")(x_in)
    x = keras.layers.MaxPooling1D(4, name="pool1")(x)
    x = keras.layers.Conv1D(32, 7, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling1D(4, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense1")(x)
    y = keras.layers.Dense(len(MOTIFS), activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(x_in, y, name="demo_motif_cnn")


def auc(y, score):
    """Area under the ROC curve of one binary task (Mann-Whitney U, ties averaged)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def motif_recovery(model_path, fasta, truth, window=15):
    """Fraction of motif-carrying sequences whose top ISM window overlaps a planted motif."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from fastism_dist.demo import top_window_hits

    hits = top_window_hits(model_path, fasta, truth, window=window)
    return float(np.mean(list(hits.values()))), len(hits)


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(SEED)
    pfms = jaspar_pfms()

    n_total = N_TRAIN + N_VALID + N_TEST
    codes = sample_background(rng, n_total)
    thresholds = {label: score_threshold(rng, pfm) for label, pfm in pfms.items()}
    labels, truth = plant(rng, codes, pfms, thresholds)
    x = one_hot_codes(codes)
    tr = slice(0, N_TRAIN)
    va = slice(N_TRAIN, N_TRAIN + N_VALID)
    te = slice(N_TRAIN + N_VALID, n_total)

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(x[tr], labels[tr], validation_data=(x[va], labels[va]), epochs=EPOCHS,
              batch_size=BATCH, shuffle=True, verbose=2)

    p = model.predict(x[te], batch_size=512, verbose=0)
    y = labels[te]
    metrics = {"jaspar_release": JASPAR_RELEASE, "motifs": dict(MOTIFS), "seed": SEED,
               "n_train": N_TRAIN, "n_valid": N_VALID, "n_test": N_TEST, "epochs": EPOCHS,
               "background_tail": BACKGROUND_TAIL,
               "score_thresholds_bits": {k: round(v, 3) for k, v in thresholds.items()},
               "test_accuracy": {}, "test_auc": {}}
    for j, (label, _) in enumerate(MOTIFS):
        metrics["test_accuracy"][label] = float(np.mean((p[:, j] > 0.5) == (y[:, j] == 1)))
        metrics["test_auc"][label] = auc(y[:, j], p[:, j])
    metrics["test_accuracy_all"] = float(np.mean((p > 0.5) == (y == 1)))
    metrics["test_exact_match"] = float(np.mean(np.all((p > 0.5) == (y == 1), axis=1)))

    # Save an uncompiled copy: the weights only, no optimizer state or training config.
    model_path = os.path.join(HERE, "demo_model.keras")
    bare = build_model()
    bare.set_weights(model.get_weights())
    bare.save(model_path)
    # the task names of each output, beside the model (Keras files carry no such labels)
    with open(os.path.join(HERE, "demo_model.tasks.json"), "w") as fh:
        json.dump({OUTPUT_NAME: [label for label, _ in MOTIFS]}, fh, indent=2)
        fh.write("\n")

    # The demo sequences: the first N_DEMO of the test split (never seen in training).
    first = te.start
    names = [f"seq{i:04d}" for i in range(N_DEMO)]
    fasta = os.path.join(HERE, "demo_sequences.fa")
    with open(fasta, "w") as fh:
        for i, name in enumerate(names):
            seq = "".join(ALPHABET[c] for c in codes[first + i])
            fh.write(f">{name}\n")
            for lo in range(0, LENGTH, 60):
                fh.write(seq[lo:lo + 60] + "\n")
    truth_path = os.path.join(HERE, "demo_truth.tsv")
    with open(truth_path, "w") as fh:
        fh.write("name\tmotif\tstart\tend\tstrand\n")
        for row, label, start, end, strand in truth:
            if first <= row < first + N_DEMO:
                fh.write(f"{names[row - first]}\t{label}\t{start}\t{end}\t{strand}\n")

    rate, n_with = motif_recovery(model_path, fasta, truth_path)
    metrics["demo_motif_recovery_15bp"] = rate
    metrics["demo_sequences_with_motif"] = n_with
    with open(os.path.join(HERE, "demo_metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    print(json.dumps(metrics, indent=2))
    print(f"model: {os.path.getsize(model_path) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
