"""The Zarr store of an ISM run: its schema, the writer the workers use, the readers.

Other packages import these names from ``fastism_dist.store``; the modules inside may move.
"""

from fastism_dist.store.reader import (
    check_params,
    chunk_plan,
    done_mask,
    normalise_params,
    open_group,
    open_results,
    read_chunk_size,
    read_params,
    store_path,
    store_state,
)
from fastism_dist.store.schema import (
    ALT_SUFFIX,
    ATTR_ALT,
    ATTR_ALT_NOTE,
    ATTR_CHUNK_SIZE,
    ATTR_MODEL_SHA256,
    ATTR_OUTPUTS,
    ATTR_PARAMS,
    ATTR_VERSION,
    BASE,
    CHUNK,
    DONE,
    DTYPES,
    PAD_COORDS,
    PER_SEQ_COORDS,
    POS,
    REF_BASE,
    REF_SUFFIX,
    RESERVED_NAMES,
    SEQ,
    SEQ_COORDS,
    STRING_DTYPE,
    VARIANT_COORDS,
    alt_name,
    n_chunks,
    output_dims,
    output_variables,
    ref_name,
    reserved_names,
)
from fastism_dist.store.writer import (
    StoreWriter,
    create_template,
    open_writer,
    write_chunk,
    write_region,
)

__all__ = [
    "SEQ", "POS", "BASE", "CHUNK", "DONE", "REF_BASE", "REF_SUFFIX", "ALT_SUFFIX",
    "SEQ_COORDS", "PAD_COORDS", "VARIANT_COORDS", "PER_SEQ_COORDS", "RESERVED_NAMES", "DTYPES",
    "STRING_DTYPE",
    "ATTR_VERSION", "ATTR_MODEL_SHA256", "ATTR_PARAMS", "ATTR_OUTPUTS", "ATTR_CHUNK_SIZE",
    "ATTR_ALT", "ATTR_ALT_NOTE",
    "output_dims", "ref_name", "alt_name", "output_variables", "reserved_names", "n_chunks",
    "store_path", "open_group", "store_state", "read_params", "read_chunk_size",
    "normalise_params", "check_params", "chunk_plan", "done_mask", "open_results",
    "create_template", "StoreWriter", "open_writer", "write_chunk", "write_region",
]
