"""Keras 3 builders for the reference architectures of the fastISM paper (Table 1 and long range).

Every builder is a plain function returning an uncompiled Functional ``keras.Model`` with a
channels-last input named ``"sequence"`` of shape (L, C); every size is an argument whose
default is the paper's value, so tests build tiny versions of the same graphs. ``seed`` makes
the initial weights deterministic. Keras is imported inside the builders: importing this
package does not import TensorFlow.

- ``basset``: Basset (Kelley et al. 2016), 3 conv/pool blocks and a dense head.
- ``factorized_basset``: Basset with its wide kernels factorized (Wnuk et al. 2019).
- ``bpnet``: BPNet (Avsec et al. 2021a), residual dilated convolutions, profile + counts.
- ``long_range``: an Enformer-like conv/pool tower followed by transformer blocks.

``randomize_batch_norm(model, seed)`` gives BatchNormalization layers non-trivial statistics.
"""

from __future__ import annotations

from fastism_dist.errors import ModelError
from fastism_dist.models.basset import basset, randomize_batch_norm
from fastism_dist.models.bpnet import bpnet
from fastism_dist.models.factorized_basset import factorized_basset
from fastism_dist.models.long_range import long_range

__all__ = [
    "REFERENCE_MODELS",
    "basset",
    "bpnet",
    "build",
    "factorized_basset",
    "long_range",
    "randomize_batch_norm",
]

#: Builder of each reference architecture, by name.
REFERENCE_MODELS = {
    "basset": basset,
    "factorized_basset": factorized_basset,
    "bpnet": bpnet,
    "long_range": long_range,
}


def build(name, **kwargs):
    """Build a reference architecture by name.

    Parameters
    ----------
    name : str
        A key of ``REFERENCE_MODELS``: "basset", "factorized_basset", "bpnet" or "long_range".
    **kwargs
        Passed to the builder (sizes, ``seed``, ...).

    Returns
    -------
    keras.Model

    Raises
    ------
    ModelError
        If ``name`` is not a reference architecture (a ``ValueError``).
    """
    try:
        builder = REFERENCE_MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown reference model {name!r}; choose one of {sorted(REFERENCE_MODELS)}"
        ) from None
    return builder(**kwargs)
