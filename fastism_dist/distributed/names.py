"""Which model outputs a run stores, and the store variable names they must not clash with."""

from __future__ import annotations

import numpy as np

from fastism_dist.errors import ModelError
from fastism_dist.store import RESERVED_NAMES, alt_name, ref_name, reserved_names


def choose_outputs(names, outputs=None):
    """The model outputs to store, in order.

    Parameters
    ----------
    names : list of str
        The model's output names.
    outputs : str, int or list of them, optional
        Names or indices, or one comma-separated string of them. Default is every output.

    Returns
    -------
    list of str

    Raises
    ------
    ModelError
        For repeated model output names, unknown outputs, and outputs whose name clashes with a
        store variable.
    """
    if len(set(names)) != len(names):
        raise ModelError(f"the model's output names are not unique: {names}")
    if outputs is None:
        selected = list(names)
    else:
        if isinstance(outputs, (str, int, np.integer)):
            outputs = [o.strip() for o in str(outputs).split(",") if o.strip()]
        selected = list(dict.fromkeys(_output_name(names, o) for o in outputs))
        unknown = [o for o in selected if o not in names]
        if unknown or not selected:
            raise ModelError(f"unknown output(s) {unknown or outputs}; the model's outputs are {names}")
    derived = {ref_name(n) for n in names}
    for name in selected:
        if name in RESERVED_NAMES or name in derived:
            raise ModelError(f"model output {name!r} clashes with a store variable name; "
                             "rename the output layer")
    return selected


def _output_name(names, output):
    """``output`` itself, or the name of output number ``output`` (an int or digits)."""
    if isinstance(output, str) and output in names:
        return output
    text = str(output)
    if not isinstance(output, bool) and text.isdigit() and int(text) < len(names):
        return names[int(text)]
    return output


def check_dim_names(dims):
    """Refuse stored dimension names that are variable names (e.g. output ``p_bin`` beside
    ``--reduce p=bins:N``).

    Parameters
    ----------
    dims : dict of str to tuple of Dim
        Output name -> its stored dimensions (``OutputPlan.dims``).
    """
    variables = reserved_names(dims)
    for name, output_dims in dims.items():
        for dim in output_dims:
            if dim.name in variables:
                raise ModelError(f"dimension {dim.name!r} of output {name!r} clashes with a store "
                                 "variable name; rename the output layer")


def check_alt_names(selected):
    """Refuse an output named like the ALT output of another (``o`` and ``o_alt``)."""
    for name in selected:
        if alt_name(name) in selected:
            raise ModelError(f"model output {alt_name(name)!r} clashes with the ALT output "
                             f"of {name!r} stored for VCF inputs; rename the output layer")
