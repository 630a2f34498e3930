"""fastism_dist: exact fast in-silico saturation mutagenesis for Keras 3 models, on Dask.

Importing the package is cheap: TensorFlow is imported by the functions that need it.
"""

from fastism_dist.errors import (
    CheckError,
    FastISMError,
    InputError,
    ModelError,
    MutationSpecError,
    StoreMismatchError,
)

__version__ = "0.1.0"

__all__ = [
    "FastISM",
    "NaiveISM",
    "AveragedISM",
    "ISMResult",
    "score",
    "open_results",
    "FastISMError",
    "InputError",
    "ModelError",
    "MutationSpecError",
    "CheckError",
    "StoreMismatchError",
    "__version__",
]

_LAZY = {
    "FastISM": "fastism_dist.core",
    "NaiveISM": "fastism_dist.core",
    "AveragedISM": "fastism_dist.core",
    "ISMResult": "fastism_dist.core",
    "score": "fastism_dist.distributed.engine",
    "open_results": "fastism_dist.analysis",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastism_dist' has no attribute {name!r}")
