"""ISM averaged over views of each sequence: its reverse complement and small shifts.

``AveragedISM`` runs an ordinary executor (fast or naive) on every view of a chunk (see
``views.py``) and stores, for each forward mutation, the mean of the view outputs mapped back to
forward coordinates. The forward mutant ``(p, s)`` is the mutant ``(p + k, s)`` of the view
shifted by ``k`` and the mutant ``(L - w - p - k, rc(s))`` of its reverse complement, so one
executor per strand (the reverse strand's substitutions reverse-complemented) computes every
view. It keeps a running sum of one call's full outputs (B, W, S, *out_k) in float32: memory is
one chunk's raw outputs, whatever the sink then stores.

Shapes: ``B`` sequences, ``L`` length, ``C`` alphabet, ``W`` mutated positions, ``S``
substitutions, ``w`` substitution width, ``M`` mutations per batch.
"""

from __future__ import annotations

import numpy as np

from fastism_dist.core.executor import ResultSink
from fastism_dist.core.fast import FastISM
from fastism_dist.core.model import find_sequence_input, load_model
from fastism_dist.core.mutations import (changed_mutations, make_mutation_spec,
                                         validate_other_inputs, validate_sequences)
from fastism_dist.core.views import (back_map, check_views, make_views, output_resolutions,
                                     parse_shifts, rc_substitutions, strand_ranges,
                                     view_sequences, view_starts)


class AveragedISM:
    """ISM whose every output is the mean over the reverse complement and shifts of the input.

    Same call and sink interface as ``ISMExecutor``: ``ism(x, other_inputs=None, sink=None)``.
    The reference outputs are averaged the same way. Other inputs are passed unchanged.

    Parameters
    ----------
    model : keras.Model or str
    rc : bool
        Also score the reverse complement (ACGT channel order). Default is False.
    shifts : int, str or sequence of int, optional
        See ``parse_shifts``: ``1`` is ``(-1, 0, 1)``. Default is no shift.
    executor : type
        ``FastISM`` or ``NaiveISM``. Default is ``FastISM``.
    start, end, substitutions, seq_input, safe_mode
        As for ``ISMExecutor``.
    bases : str, optional
        Letters of the channels, checked for ``rc``. Default is ACGT.
    **options
        Further ``executor`` options (``batch_size``, ``check``, ``skip_identity``, ...).
    """

    def __init__(self, model, rc=False, shifts=None, executor=FastISM, start=0, end=None,
                 substitutions=None, seq_input=0, safe_mode=True, bases=None, **options):
        self.model = load_model(model, safe_mode=safe_mode)
        self.seq = find_sequence_input(self.model, seq_input)
        self.rc, self.shifts = bool(rc), parse_shifts(shifts)
        check_views(self.rc, self.shifts, self.seq.length, self.seq.channels, bases)
        self.spec = make_mutation_spec(self.seq.length, self.seq.channels, start, end,
                                       substitutions)
        self.views = make_views(self.rc, self.shifts)
        self._resolutions = self._known_resolutions()
        self.skip_identity = bool(options.get("skip_identity", True))
        self.executors = self._strand_executors(executor, seq_input, safe_mode, options)
        first = next(e for e in self.executors.values() if e is not None)
        self.output_names, self.batch_size = first.output_names, first.batch_size
        self.method = executor.method
        self._predict = None

    def _known_resolutions(self):
        """Length-axis resolutions where the model declares every output shape, else None."""
        shapes = [tuple(t.shape[1:]) for t in self.model.outputs]
        if any(d is None for shape in shapes for d in shape):
            return None  # found from the first reference outputs
        return output_resolutions(self.seq.length, shapes, self.shifts)

    def _strand_executors(self, executor, seq_input, safe_mode, options):
        """{rc: executor or None} covering every view's window starts on that strand."""
        spec = self.spec
        spans = strand_ranges(self.views, spec.positions, self.seq.length, spec.width)
        built = {}
        for strand, span in spans.items():
            subs = rc_substitutions(spec.substitutions) if strand else spec.substitutions
            built[strand] = None if span is None else executor(
                self.model, start=span[0], end=span[1], substitutions=subs, seq_input=seq_input,
                safe_mode=safe_mode, **options)
        return built

    def __call__(self, x, other_inputs=None, sink=None):
        """Averaged ISM of ``x`` (B, L, C); returns ``sink.finish()`` (default an ``ISMResult``)."""
        x = validate_sequences(x, self.seq)
        others = validate_other_inputs(self.model, self.seq, other_inputs, len(x))
        total = None
        for view in self.views:
            part = self._view_outputs(x, others, view)
            total = part if total is None else total.merge(part)
        return self._emit(x, total, ResultSink() if sink is None else sink)

    def warm_up(self, x, other_inputs=None, max_mutations=None):
        """Warm up every strand's executor on ``x`` (B, L, C): see ``ISMExecutor.warm_up``."""
        for executor in self.executors.values():
            if executor is not None:
                executor.warm_up(x, other_inputs, max_mutations)

    def _view_outputs(self, x, others, view):
        """``ViewSum`` of one view: its outputs at every forward mutation, mapped back."""
        executor = self.executors[view.rc] or self.executors[not view.rc]
        inside, where = view_starts(view, self.spec.positions, self.seq.length, self.spec.width)
        if self.executors[view.rc] is None:
            inside = np.zeros_like(inside)  # no window lands in this strand's views
        local = where[inside] - executor.spec.start
        forward = np.flatnonzero(inside)
        xv = view_sequences(x, view)
        acc = ViewSum(view, forward, len(self.spec.positions), len(self.spec.substitutions),
                      self._resolution_of)
        executor.run_positions(xv, local, [o for o in others if o is not None], sink=acc)
        return acc

    def _resolution_of(self, ref):
        if self._resolutions is None:
            shapes = [r.shape[1:] for r in ref]
            self._resolutions = output_resolutions(self.seq.length, shapes, self.shifts)
        return self._resolutions

    def _emit(self, x, total, sink):
        """Hand the averaged reference and mutants to ``sink`` in batches."""
        ref, mut = total.means()
        spec = self.spec
        triples = changed_mutations(x, spec.positions, spec.substitutions)
        if not self.skip_identity:
            triples = np.argwhere(np.ones(mut[0].shape[:3], dtype=bool)).astype(np.int32)
        sink.begin(ref, mut[0].shape[:3])
        for lo in range(0, len(triples), self.batch_size):
            b, p, s = triples[lo:lo + self.batch_size].T
            sink.add(b, p, s, [m[b, p, s] for m in mut])
        return sink.finish()

    def predict(self, x):
        """Averaged model outputs of (B, L, C) sequences: list of (B, *out_k) float32 arrays."""
        x = np.asarray(x, dtype=np.float32)
        sums, counts = None, None
        for view in self.views:
            outs = self._call_model(view_sequences(x, view))
            mapped = [back_map(o, view, r) for o, r in zip(outs, self._resolution_of(outs))]
            if sums is None:
                sums, counts = [np.zeros_like(m) for m, _ in mapped], [0] * len(mapped)
            for k, (m, covered) in enumerate(mapped):
                sums[k] += m
                counts[k] = counts[k] + _count_shape(covered, m.ndim - 1)
        return [_mean(s, c) for s, c in zip(sums, counts)]

    def _call_model(self, x):
        if self._predict is None:
            import tensorflow as tf

            model = self.model

            @tf.function(reduce_retracing=True)
            def predict(inputs):
                return model(inputs, training=False)

            self._predict = predict
        from keras import tree

        return [np.asarray(o, dtype=np.float32) for o in tree.flatten(self._predict(x))]


def _count_shape(covered, rank):
    """1 per view for an output without length axis, else (L_out, 1, ...) of 0/1 counts."""
    if covered is None:
        return 1
    return covered.astype(np.float32).reshape((-1,) + (1,) * (rank - 1))


def _mean(total, count):
    """``total / count``; NaN where no view covers a bin."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(count) > 0, total / np.maximum(count, 1), np.nan
                        ).astype(np.float32)


class ViewSum:
    """The sink of one view's executor call: its outputs at forward (b, p, s), summed over views.

    Parameters
    ----------
    view : View
    forward : ndarray of int, shape (W',)
        Forward position index of each position the view's executor mutates.
    n_positions, n_substitutions : int
        W and S of the forward run.
    resolutions : callable
        ``resolutions(ref)`` -> resolution of each output's length axis (or None).
    """

    def __init__(self, view, forward, n_positions, n_substitutions, resolutions):
        self.view, self.forward = view, np.asarray(forward)
        self.shape = (n_positions, n_substitutions)
        self.resolutions = resolutions

    def begin(self, ref, shape):
        """Every forward mutant starts at this view's mapped reference."""
        res = self.resolutions(ref)
        mapped = [back_map(np.asarray(r, dtype=np.float32), self.view, k) for r, k in zip(ref, res)]
        self.res = res
        self.ref = [np.array(m, dtype=np.float32) for m, _ in mapped]
        self.counts = [_count_shape(c, m.ndim - 1) for m, c in mapped]
        self.mut = [np.broadcast_to(r[:, None, None], (len(r),) + self.shape + r.shape[1:]).copy()
                    for r in self.ref]

    def add(self, b, p, s, outputs):
        """Replace the reference at the forward mutations of one batch by their outputs."""
        fp = self.forward[p]
        for k, (mut, out) in enumerate(zip(self.mut, outputs)):
            mut[b, fp, s] = back_map(np.asarray(out, dtype=np.float32), self.view, self.res[k])[0]

    def finish(self):
        return self

    def merge(self, other):
        """Add ``other``'s sums and counts to this one's; returns self."""
        for k in range(len(self.mut)):
            self.ref[k] += other.ref[k]
            self.mut[k] += other.mut[k]
            self.counts[k] = self.counts[k] + other.counts[k]
        return self

    def means(self):
        """(ref, mut): lists of (B, *out_k) and (B, W, S, *out_k) means over the merged views."""
        ref = [_mean(r, c) for r, c in zip(self.ref, self.counts)]
        mut = [_mean(m, c) for m, c in zip(self.mut, self.counts)]
        return ref, mut
