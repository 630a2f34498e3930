"""The checks ``plan_run`` makes of a run's settings before anything starts or is written.

Each raises ``FastISMError`` (or a subclass) with a one-line message naming the setting.
"""

from __future__ import annotations

import os
import tempfile

from fastism_dist.core import (check_views, make_views, output_resolutions, parse_shifts,
                               strand_ranges)
from fastism_dist.distributed.model import EXECUTORS, output_shapes
from fastism_dist.distributed.settings import check_count
from fastism_dist.errors import FastISMError
from fastism_dist.store import DTYPES, is_url


def check_views_of_run(keras_model, seq, spec, rc, shifts, bases):
    """(rc, shifts) checked against the alphabet, the positions and the outputs' length axes."""
    shifts = parse_shifts(shifts)
    rc = bool(rc)
    check_views(rc, shifts, seq.length, seq.channels, "".join(str(b) for b in bases))
    strand_ranges(make_views(rc, shifts), spec.positions, seq.length, spec.width)
    output_resolutions(seq.length, list(output_shapes(keras_model, seq).values()), shifts)
    return rc, shifts


def chunk_shapes(keras_model, seq, output_plan, rc, shifts, kept_models=1):
    """Per-sequence shapes sizing a chunk: stored ones (times ``kept_models``, the models an
    ensemble keeps side by side), or every raw output when averaging (the workers then hold one
    chunk's raw outputs)."""
    if not rc and tuple(shifts) == (0,):
        shapes = list(output_plan.shapes.values())
        return shapes if kept_models == 1 else [(kept_models, *s) for s in shapes]
    return list(output_shapes(keras_model, seq).values())


def check_ensemble_options(other_inputs, rc, shifts):
    """Raise ``FastISMError`` for options an ensemble run does not take."""
    if other_inputs is not None:
        raise FastISMError("ensembles score single-input models only: drop --other-inputs")
    if rc or tuple(shifts) != (0,):
        raise FastISMError("ensembles do not average over --rc / --shifts yet: score each "
                           "model with them on its own")


def check_out_location(out, overwrite=False):
    """Raise ``FastISMError`` where workers could not write the store ``out``.

    A ``memory://`` store lives in one process; a local store needs a writable folder: the store
    itself when it exists, and the folder it is created in (the nearest existing one).
    """
    if out.startswith("memory://"):
        raise FastISMError(f"--out {out}: local-memory stores cannot be shared with worker "
                           "processes; give a directory or a URL every worker can reach")
    if is_url(out):
        return
    folders = [out] if os.path.isdir(out) else []
    if overwrite or not folders:
        parent = os.path.dirname(out)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        folders.append(parent)
    for folder in folders:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".fastism-probe-", dir=folder))
        except OSError as err:
            raise FastISMError(f"--out {out}: cannot write in {folder} "
                               f"({err.strerror or type(err).__name__})") from None


def check_settings(chunk_size, batch_size, dtype, method, read_chunk=None):
    for name, value in (("chunk_size", chunk_size), ("batch_size", batch_size),
                        ("read_chunk", read_chunk)):
        if value is not None:
            check_count(name, value)
    if dtype not in DTYPES:
        raise FastISMError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if method not in EXECUTORS:
        raise FastISMError(f"method must be one of {sorted(EXECUTORS)}, got {method!r}")


#: The ``xla`` settings of a run, with the CLI's words for them.
XLA_CHOICES = {"auto": "auto", "on": True, "off": False}


def check_xla(xla, method):
    """``xla`` as FastISM takes it (True, False or "auto"); "on" / "off" are accepted too.

    Raises ``FastISMError`` for another value, or a fixed choice with a method other than
    "fast" (only the fast path has an XLA choice).
    """
    choice = XLA_CHOICES.get(xla) if isinstance(xla, str) else xla
    if not (choice == "auto" or isinstance(choice, bool)):
        raise FastISMError(f"xla must be 'auto', 'on' or 'off' (or True / False), got {xla!r}")
    if choice != "auto" and method != "fast":
        raise FastISMError(f"--xla {'on' if choice else 'off'}: only method 'fast' compiles "
                           f"with XLA; drop --xla for method {method!r}")
    return choice


def sharding(read_chunk, chunk_size, n_sequences):
    """``read_chunk`` where it shards the store, else None; checked against ``chunk_size``."""
    if read_chunk is None or min(read_chunk, n_sequences) >= min(chunk_size, n_sequences):
        return None
    if chunk_size % read_chunk:
        raise FastISMError(f"--read-chunk {read_chunk} must divide --chunk-size {chunk_size}")
    return int(read_chunk)
