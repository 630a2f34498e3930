"""VCF inputs: each sequence's output with its ALT allele in place (``o_alt`` in the store)."""

from __future__ import annotations

import numpy as np

from fastism_dist.io import one_hot
from fastism_dist.store import alt_name


def apply_variants(x, variants, rows, alphabet):
    """The windows of ``x`` with each sequence's VCF ALT allele in place of its REF allele.

    Parameters
    ----------
    x : ndarray of shape (B, L, C)
        The sequences ``rows`` of the source, as read.
    variants : dict
        ``source.variants()``: per sequence ``variant_pos``, ``ref``, ``alt`` (N of them).
    rows : slice
        Which sequences of the source ``x`` holds.
    alphabet : str

    Returns
    -------
    x_alt : ndarray of shape (B, L, C)
        A copy of ``x`` with ALT written over REF at ``variant_pos`` where ``ok``.
    ok : ndarray of bool, shape (B,)
        True for SNVs and same-length MNVs that fit in the window; False for indels (REF and
        ALT of different lengths), whose ALT output is not computed.
    """
    x_alt = np.array(x, dtype=np.float32, copy=True)
    positions = np.asarray(variants["variant_pos"])[rows]
    refs = np.asarray(variants["ref"], dtype=object)[rows]
    alts = np.asarray(variants["alt"], dtype=object)[rows]
    ok = np.zeros(len(x), dtype=bool)
    for i, (pos, ref, alt) in enumerate(zip(positions.tolist(), refs.tolist(), alts.tolist())):
        if len(ref) != len(alt) or not alt or pos < 0 or pos + len(alt) > x.shape[1]:
            continue
        x_alt[i, pos:pos + len(alt)] = one_hot(alt, alphabet)
        ok[i] = True
    return x_alt, ok


def count_indels(variants):
    """Number of variants whose REF and ALT differ in length (their ALT output is NaN)."""
    return sum(len(r) != len(a) for r, a in zip(variants["ref"], variants["alt"]))


def alt_note(variants, outputs):
    """The store's ``alt_note``: what the ``<o>_alt`` variables of ``outputs`` hold."""
    n_indels = count_indels(variants)
    names = ", ".join(alt_name(o) for o in outputs)
    note = (f"{names}: the model output with the VCF ALT allele written over REF at variant_pos "
            "(SNVs and same-length MNVs), reduced like the mutants")
    if n_indels:
        note += (f"; {n_indels} indel(s) (REF and ALT of different lengths) are NaN: an indel "
                 "changes the window length, which a fixed-length model cannot score exactly")
    return note


class AltAlleles:
    """Computes the ALT outputs of a worker's chunks: one batched model call per chunk.

    Parameters
    ----------
    predict : callable
        The model: (n, L, C) float32 -> list of (n, *out_k) float32, one per model output.
    output_names : list of str
        The model's outputs, in the order ``predict`` returns them.
    variants : dict
        ``source.variants()`` of the whole source.
    alphabet : str
    output_plan : OutputPlan
        Applied to the ALT outputs as to the mutants.
    """

    def __init__(self, predict, output_names, variants, alphabet, output_plan):
        self.predict = predict
        self.output_names = list(output_names)
        self.variants = variants
        self.alphabet = alphabet
        self.output_plan = output_plan

    def outputs(self, x, rows, ref):
        """The stored ALT outputs of one chunk; NaN where not applicable.

        Indels (and any allele that does not fit in the window) stay NaN.

        Parameters
        ----------
        x : ndarray of shape (B, L, C)
            The chunk's sequences (rows ``rows`` of the source).
        rows : slice
        ref : dict of str to ndarray of shape (B, *out)
            The raw reference outputs of the stored outputs (reducers such as ``jsd`` compare
            with them).

        Returns
        -------
        dict of str to ndarray of shape (B, *stored)
        """
        x_alt, ok = apply_variants(x, self.variants, rows, self.alphabet)
        raw = self.predict(x_alt[ok]) if ok.any() else None
        plan = self.output_plan
        out = {}
        for k, name in enumerate(self.output_names):
            if name not in ref:
                continue
            values = np.full((len(x),) + tuple(plan.shapes[name]), np.nan, dtype=np.float32)
            if raw is not None:
                values[ok] = plan.apply_one(name, ref[name][ok], raw[k])
            out[name] = values
        return out
