"""``fastism-dist export``: the command line of the exports.

Only argparse is used when the parser is built; the exporters (and xarray with them) are loaded
when a subcommand runs, so ``fastism-dist --help`` stays instant.
"""

from __future__ import annotations

import re

import fastism_dist.export as exporters
from fastism_dist.export.names import SCORES


def task_argument(text):
    """A ``--task`` value: an int index (negative counts from the end) or a label."""
    if text is None:
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def add_export_parser(subparsers):
    """The ``export`` subcommand and its formats ``modisco``, ``bigwig``, ``variants``."""
    p = subparsers.add_parser(
        "export", help="write a store's results for other tools: TF-MoDISco, bigWig, variant tables",
        description=("Read a store chunk by chunk and write TF-MoDISco inputs (modisco), a "
                     "per-position importance track (bigwig) or a table of VCF variant effects "
                     "(variants)."))
    formats = p.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    _add_modisco(formats)
    _add_bigwig(formats)
    _add_variants(formats)
    return p


def _common(p, output_help="model output (default: the only one)"):
    p.add_argument("store", metavar="STORE", help="Zarr store written by fastism-dist score")
    p.add_argument("--output", metavar="NAME", help=output_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")


def _add_modisco(formats):
    p = formats.add_parser(
        "modisco", help="ohe.npz and attr.npz for `modisco motifs -s ohe.npz -a attr.npz`",
        description=("Write DIR/ohe.npz (one-hot reference sequences) and DIR/attr.npz "
                     "(hypothetical ISM contributions: each base's output minus the mean over "
                     "the bases), both (N, 4, L) under arr_0. The store must be complete."))
    _common(p)
    tasks = p.add_mutually_exclusive_group()
    tasks.add_argument("--task", metavar="T", help="task index or label of the output")
    tasks.add_argument("--sum-tasks", action="store_true", help="sum the output over its tasks")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for ohe.npz and attr.npz")
    p.set_defaults(_export=_run_modisco)


def _add_bigwig(formats):
    p = formats.add_parser(
        "bigwig", help="per-position importance on the genome as a bigWig track",
        description=("Write one value per scored genomic position. Overlapping windows: each "
                     "base takes the value of the window whose centre is nearest to it."))
    _common(p)
    p.add_argument("--task", metavar="T", help="task index or label (default: all tasks)")
    p.add_argument("--score", choices=SCORES, default="l2",
                   help="l2: L2 norm over bases of the change from the reference (default); "
                        "ref: mean-centred contribution of the reference base")
    p.add_argument("--genome", metavar="FASTA",
                   help="genome FASTA (or .fai) for the chromosome sizes (default: the store's, "
                        "else the largest coordinate scored)")
    p.add_argument("--out", required=True, metavar="FILE.bw", help="the bigWig file to write")
    p.set_defaults(_export=_run_bigwig)


def _add_variants(formats):
    p = formats.add_parser(
        "variants", help="table of VCF variant effects: one row per variant, output and task",
        description=("Write variant_id, chrom, variant_pos (1-based), alleles, output, task, "
                     "ref / alt outputs and alt - ref (NaN for indels) for a VCF run."))
    _common(p, output_help="comma-separated outputs (default: all)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.tsv, or FILE.parquet (needs pyarrow)")
    p.set_defaults(_export=_run_variants)


def _run_modisco(args):
    files = exporters.export_modisco(args.store, args.out, output=args.output,
                                     task=task_argument(args.task), sum_tasks=args.sum_tasks,
                                     progress=not args.quiet)
    n, channels, length = files.shape
    return (f"wrote {files.sequences} and {files.attributions}: {n} sequences x {channels} "
            f"bases x {length} positions")


def _run_bigwig(args):
    track = exporters.export_bigwig(args.store, args.out, output=args.output,
                                    task=task_argument(args.task), score=args.score,
                                    genome=args.genome, progress=not args.quiet)
    return (f"wrote {track.path}: {track.n_positions} positions on {len(track.chrom_sizes)} "
            f"chromosomes (chromosome sizes from {track.sizes_from})")


def _run_variants(args):
    outputs = args.output.split(",") if args.output else None
    rows = exporters.export_variants(args.store, args.out, output=outputs, progress=not args.quiet)
    return f"wrote {args.out}: {rows} rows"


def run_export(args):
    """Run the chosen export and print one summary line (unless ``--quiet``)."""
    summary = args._export(args)
    if not args.quiet:
        print(summary)
    return 0
