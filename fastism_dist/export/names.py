"""The names the exports write and accept, in one light module (the command line reads them)."""

SEQUENCES_FILE = "ohe.npz"
"""TF-MoDISco's one-hot sequences."""
ATTRIBUTIONS_FILE = "attr.npz"
"""TF-MoDISco's hypothetical contributions."""
NPZ_KEY = "arr_0"
"""The key modisco-lite reads in each ``.npz``."""

SCORES = ("l2", "ref")
"""Per-position scores of a bigWig track."""
CHROM_SIZES = "chrom_sizes"
"""A store attribute or parameter (``{chrom: length}``) read for a bigWig header when no genome is given."""

TABLE_FORMATS = (".tsv", ".parquet")
"""Variant table file types."""
COLUMNS = ("seq", "variant_id", "chrom", "variant_pos", "ref_allele", "alt_allele", "output",
           "task", "ref_output", "alt_output", "alt_minus_ref")
"""Variant table columns, in order."""
