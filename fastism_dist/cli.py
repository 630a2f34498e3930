"""The ``fastism-dist`` command line: a thin layer over the library.

Each subcommand is a pair ``add_<name>_parser(subparsers)`` / ``run_<name>(args)`` listed in
``COMMANDS``. Nothing heavy is imported at module level, so ``fastism-dist --help`` is instant.
Any ``FastISMError`` becomes one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from fastism_dist.errors import FastISMError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


# --------------------------------------------------------------------------- score


def add_score_parser(subparsers):
    p = subparsers.add_parser(
        "score",
        help="saturation mutagenesis of every sequence in INPUT, on a Dask cluster, into a Zarr store",
        description=(
            "Score every substitution at every position of every sequence in INPUT with MODEL and "
            "write the outputs to the Zarr store --out. Runs on a local cluster by default, on "
            "GPUs with --gpus, or on an existing cluster with --scheduler. Rerunning the same "
            "command resumes: chunks already done are skipped."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="Keras model file (.keras or .h5)")
    p.add_argument("input", metavar="INPUT",
                   help="FASTA (.fa/.fasta[.gz]), BED or VCF (with --genome), or .npy one-hot (N, L, C)")
    p.add_argument("--out", required=True, metavar="STORE",
                   help="Zarr store to write (a directory, or an fsspec URL every worker can reach)")
    cluster = p.add_argument_group("cluster")
    cluster.add_argument("--workers", type=_positive_int, metavar="N",
                         help="local worker processes (default: one per CPU core, or per GPU with --gpus)")
    cluster.add_argument("--threads-per-worker", type=_positive_int, default=1, metavar="T",
                         help="threads (and TensorFlow threads) per local worker (default: 1)")
    cluster.add_argument("--gpus", action="store_true",
                         help="one worker per GPU with dask_cuda.LocalCUDACluster (needs the gpu extra)")
    cluster.add_argument("--scheduler", metavar="ADDR",
                         help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786 or tls://...")
    cluster.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate for a tls:// scheduler")
    cluster.add_argument("--tls-cert", metavar="PEM", help="client certificate for a tls:// scheduler")
    cluster.add_argument("--tls-key", metavar="PEM",
                         help="client private key for a tls:// scheduler (if not inside --tls-cert)")
    cluster.add_argument("--retries", type=_non_negative_int, default=3, metavar="K",
                         help="extra attempts per chunk after an error (default: 3)")
    run = p.add_argument_group("what to compute")
    run.add_argument("--chunk-size", type=_positive_int, metavar="SEQS",
                     help="sequences per chunk and per task (default: the store's on resume, else automatic)")
    run.add_argument("--batch-size", type=_positive_int, metavar="MUTATIONS",
                     help="mutations per model call (default: 256)")
    run.add_argument("--start", type=int, default=0, metavar="A",
                     help="first mutated position, 0-based (default: 0)")
    run.add_argument("--end", type=int, metavar="B",
                     help="mutate positions A..B-1 (default: the whole sequence)")
    run.add_argument("--method", choices=["fast", "naive"], default="fast",
                     help="ISM executor (default: fast)")
    run.add_argument("--outputs", metavar="NAMES",
                     help="comma-separated model outputs to store (default: all)")
    run.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                     help="stored dtype (default: float32)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing store written with other parameters")
    run.add_argument("--unsafe-model", action="store_true",
                     help="load the model without Keras safe mode (allows Lambda layers; trusted files only)")
    seqs = p.add_argument_group("sequences")
    seqs.add_argument("--genome", metavar="FASTA", help="genome FASTA for BED and VCF inputs")
    seqs.add_argument("--resize", action="store_true",
                      help="centre-crop or pad FASTA / .npy sequences to the model's input length")
    seqs.add_argument("--skip-mismatches", action="store_true",
                      help="VCF: skip records whose REF does not match the genome (default: error)")
    seqs.add_argument("--alphabet", default="ACGT", help="channel letters (default: ACGT)")
    p.add_argument("--quiet", action="store_true", help="no dashboard link, progress bar or summary")
    return p


def _security(args):
    """A ``distributed.Security`` from the --tls-* flags, or None."""
    given = [args.tls_ca_file, args.tls_cert, args.tls_key]
    scheduler = args.scheduler or ""
    if not any(given):
        if scheduler.startswith("tls://"):
            raise FastISMError(f"scheduler {scheduler} uses TLS: pass --tls-ca-file, --tls-cert "
                               "and --tls-key")
        return None
    if not scheduler.startswith("tls://"):
        raise FastISMError("--tls-ca-file / --tls-cert / --tls-key need a --scheduler tls://... address")
    if not args.tls_ca_file or not args.tls_cert:
        raise FastISMError("TLS needs both --tls-ca-file and --tls-cert (and --tls-key unless "
                           "the key is inside the certificate file)")
    import os

    for flag, path in (("--tls-ca-file", args.tls_ca_file), ("--tls-cert", args.tls_cert),
                       ("--tls-key", args.tls_key)):
        if path and not os.path.isfile(path):
            raise FastISMError(f"{flag}: file not found: {path}")
    from distributed import Security

    return Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert,
                    tls_client_key=args.tls_key, require_encryption=True)


def run_score(args):
    security = _security(args)
    if args.scheduler and (args.gpus or args.workers):
        raise FastISMError("--scheduler uses the workers of that cluster: drop --workers / --gpus")
    from fastism_dist.engine import score

    score(
        args.model, args.input, args.out, workers=args.workers,
        threads_per_worker=args.threads_per_worker, gpus=args.gpus, scheduler=args.scheduler,
        chunk_size=args.chunk_size, batch_size=args.batch_size, start=args.start, end=args.end,
        method=args.method, genome=args.genome, outputs=args.outputs, dtype=args.dtype,
        overwrite=args.overwrite, safe_mode=not args.unsafe_model, security=security,
        progress=not args.quiet, retries=args.retries, resize=args.resize,
        skip_mismatches=args.skip_mismatches, alphabet=args.alphabet,
    )
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [("score", add_score_parser, run_score)]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastism-dist",
        description="Exact fast in-silico saturation mutagenesis for Keras models, on Dask.",
    )
    from fastism_dist import __version__

    parser.add_argument("--version", action="version", version=f"fastism-dist {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add, run in COMMANDS:
        add(subparsers).set_defaults(_run=run)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return args._run(args) or 0
    except FastISMError as err:
        message = " ".join(str(err).split("\n")[0].split())
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:  # score() has said how far it got
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
