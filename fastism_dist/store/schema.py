"""Every name in a fastism_dist Zarr store: dimensions, variables, coordinates and attributes.

One store holds one run. For a model output ``o`` of per-sequence shape ``out``::

    o          (seq, pos, base, *o_dims)   model output for each substitution
    o_ref      (seq, *o_dims)              reference output
    o_alt      (seq, *o_dims)              VCF inputs only: output with the ALT allele
    done       (chunk,)                    1 where a chunk of sequences is complete
    coords     seq (ids), pos (0-based position in the input), base (letters),
               chrom / start / end / strand (seq,) where known, pad_left / pad_right (seq,)
               where a window is padded, variant_pos / ref_allele / alt_allele / variant_id
               (seq,) for VCF inputs, ref_base (seq, pos); labels of an output's own
               dimensions where known (task names, reducer bins)
    attrs      fastism_dist_version, model_sha256, params (JSON), outputs, chunk_size, alt
               (True when ``o_alt`` variables exist), alt_note (VCF inputs), run_id (the run
               that created the store: only that run's writers write into it)

An ensemble store also has ``ensemble`` ("mean" or "keep"), ``ensemble_models`` (file names),
``model_sha256s`` (name -> SHA-256) and ``ensemble_group_size``; with "keep" every output
variable has a ``model`` dimension after ``seq``, labelled by file name and chunked by group.

An output's own dimensions ``o_dims`` are ``o_dim_0, o_dim_1, ...`` unless a reducer renames or
relabels them.
"""

from __future__ import annotations

import math

import numpy as np

SEQ = "seq"
POS = "pos"
BASE = "base"
CHUNK = "chunk"
DONE = "done"
REF_BASE = "ref_base"
REF_SUFFIX = "_ref"
ALT_SUFFIX = "_alt"
CHROM = "chrom"
START = "start"
END = "end"
STRAND = "strand"
PAD_LEFT = "pad_left"
PAD_RIGHT = "pad_right"
VARIANT_POS = "variant_pos"
REF_ALLELE = "ref_allele"
ALT_ALLELE = "alt_allele"
VARIANT_ID = "variant_id"
SEQ_COORDS = (CHROM, START, END, STRAND)
PAD_COORDS = (PAD_LEFT, PAD_RIGHT)
VARIANT_COORDS = (VARIANT_POS, REF_ALLELE, ALT_ALLELE, VARIANT_ID)
PER_SEQ_COORDS = SEQ_COORDS + PAD_COORDS + VARIANT_COORDS
RESERVED_NAMES = (SEQ, POS, BASE, CHUNK, DONE, REF_BASE) + PER_SEQ_COORDS
DTYPES = ("float32", "float16")

ATTR_VERSION = "fastism_dist_version"
ATTR_MODEL_SHA256 = "model_sha256"
ATTR_PARAMS = "params"
ATTR_OUTPUTS = "outputs"
ATTR_CHUNK_SIZE = "chunk_size"
ATTR_ALT = "alt"
ATTR_ALT_NOTE = "alt_note"
ATTR_RUN_ID = "run_id"

#: Ensembles of models: the ``model`` dimension of a ``keep`` store, the attributes naming the
#: models, their SHA-256 digests, the mode and the models per task, and the scratch group of
#: per-(chunk, group) flags and partial sums (removed when the run completes).
MODEL = "model"
ATTR_ENSEMBLE = "ensemble"
ATTR_ENSEMBLE_MODELS = "ensemble_models"
ATTR_MODEL_SHA256S = "model_sha256s"
ATTR_GROUP_SIZE = "ensemble_group_size"
ENSEMBLE_MODES = ("mean", "keep")
SCRATCH = "fastism_scratch"
GROUP_DONE = "group_done"

#: The root group's metadata file in a Zarr v3 directory store (its attributes live there).
ROOT_METADATA = "zarr.json"
#: Siblings of a store ``<out>``: a template being written, the new store of an ``--overwrite``
#: run (swapped in when that run succeeds) and the replaced store on its way out.
TEMPLATE_SUFFIX = ".fastism-tmp-"
STAGING_SUFFIX = ".fastism-new-"
RETIRED_SUFFIX = ".fastism-old-"

STRING_DTYPE = np.dtypes.StringDType()


def output_dims(name, ndim):
    """Default names of an output's own dimensions: ``<name>_dim_0``, ``<name>_dim_1``, ..."""
    return tuple(f"{name}_dim_{i}" for i in range(ndim))


def ref_name(name):
    """Variable holding the reference output of model output ``name``."""
    return f"{name}{REF_SUFFIX}"


def alt_name(name):
    """Variable holding the output of model output ``name`` with the VCF ALT allele applied."""
    return f"{name}{ALT_SUFFIX}"


def output_variables(name, alt=False):
    """The variables a store holds for output ``name``: ``o``, ``o_ref`` and, with ``alt``, ``o_alt``."""
    return (name, ref_name(name)) + ((alt_name(name),) if alt else ())


def reserved_names(outputs, alt=True):
    """Names no output dimension may take: the store's own and every output's variables.

    Parameters
    ----------
    outputs : iterable of str
        The stored output names.
    alt : bool
        Count the ``o_alt`` names too. Default is True.

    Returns
    -------
    set of str
    """
    names = set(RESERVED_NAMES)
    for name in outputs:
        names.update(output_variables(name, alt))
    return names


def n_chunks(n_sequences, chunk_size):
    """Number of chunks of ``chunk_size`` sequences covering ``n_sequences`` (the last may be short)."""
    return int(math.ceil(n_sequences / chunk_size))
