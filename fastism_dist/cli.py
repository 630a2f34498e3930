"""The ``fastism-dist`` command line: a thin layer over the library.

Each subcommand is a pair ``add_<name>_parser(subparsers)`` / ``run_<name>(args)`` listed in
``COMMANDS``. Nothing heavy is imported at module level, so ``fastism-dist --help`` is instant.

What reaches the terminal is one line per problem: a ``FastISMError`` or an ``OSError`` becomes
``error: ...`` on stderr and exit code 2, Ctrl-C exit code 130, anything else (a bug) exit code
1. Commands that run a model send the native output of this process and of every worker it
starts (TensorFlow's start-up lines, worker tracebacks) to a log file in the cache folder; a
failure after the cluster started names that file, which is then kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
import zipfile
import zlib

from fastism_dist.errors import FastISMError, ModelError
from fastism_dist.export import add_export_parser, run_export
from fastism_dist.logs import native_output_to, new_log_path

EXIT_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
#: Commands whose native output (TensorFlow, Dask workers) goes to the log file.
LOGGED_COMMANDS = ("score", "inspect", "demo")


def _int_at_least(minimum, what):
    """An argparse type: an int >= ``minimum``, else an error naming ``what``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


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
    p.add_argument("model", metavar="MODEL",
                   help="Keras model file (.keras or .h5); or an ensemble: a directory of model "
                        "files or a quoted glob ('models/*.keras'), used in file-name order")
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
    run.add_argument("--read-chunk", type=_positive_int, metavar="SEQS",
                     help="sequences per Zarr chunk inside each task's file (a shard; default: "
                          "one chunk per task)")
    run.add_argument("--batch-size", type=_positive_int, metavar="MUTATIONS",
                     help="mutations per model call (default: what fits 1 GB, at most 256 "
                          "for naive and 512 for fast)")
    run.add_argument("--start", type=int, default=0, metavar="A",
                     help="first mutated position, 0-based (default: 0)")
    run.add_argument("--end", type=int, metavar="B",
                     help="mutate positions A..B-1 (default: the whole sequence)")
    run.add_argument("--method", choices=["fast", "naive"], default="fast",
                     help="ISM executor (default: fast)")
    run.add_argument("--xla", choices=["auto", "on", "off"], default="auto",
                     help="method fast: compile the mutation pass with XLA, or not; auto lets "
                          "each worker time both in its warm-up (default: auto)")
    run.add_argument("--rc", action="store_true", help="average over each sequence and its "
                     "reverse complement, mutations mapped to forward coordinates (ACGT only)")
    run.add_argument("--shifts", metavar="N|K[,..]",
                     help="also average over the sequence shifted by -N..N positions, or by the "
                          "listed ones (-1,0,1); vacated positions are N (default: none)")
    run.add_argument("--outputs", metavar="NAMES",
                     help="comma-separated model outputs (names or indices) to store (default: all)")
    run.add_argument("--tasks", metavar="I|NAME[,..]",
                     help="keep only these entries of the last axis of every stored output: "
                          "indices, or names where the model names its tasks (default: all)")
    run.add_argument("--reduce", metavar="SPEC",
                     help="reduce outputs on the workers before writing, e.g. profile=jsd,counts or "
                          "profile=total, profile=bins:10; reducers: total, logsum, jsd, bins:N, "
                          "tasks:I+J (default: store the outputs as computed)")
    run.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                     help="stored dtype (default: float32)")
    run.add_argument("--ensemble", choices=["mean", "keep"],
                     help="an ensemble MODEL: store the mean over the models, or keep every model "
                          "along a 'model' dimension (default: mean)")
    run.add_argument("--group-size", type=_positive_int, metavar="MODELS",
                     help="an ensemble MODEL: models per task, loaded together (default: 8)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing store written with other parameters")
    run.add_argument("--unsafe-model", action="store_true",
                     help="load the model without Keras safe mode (allows Lambda layers; trusted files only)")
    run.add_argument("--seq-input", metavar="NAME_OR_INDEX",
                     help="the sequence input of a model with several inputs (default: the first)")
    run.add_argument("--other-inputs", metavar="FILE",
                     help="a multi-input model's other inputs, one row per sequence: FILE.npy "
                          "(one array) or FILE.npz (one array per input name)")
    seqs = p.add_argument_group("sequences")
    seqs.add_argument("--genome", metavar="FASTA", help="genome FASTA for BED and VCF inputs")
    seqs.add_argument("--resize", action="store_true",
                      help="centre-crop or pad FASTA / .npy sequences to the model's input length")
    seqs.add_argument("--skip-mismatches", action="store_true",
                      help="VCF: skip records whose REF does not match the genome (default: error)")
    seqs.add_argument("--alphabet", default="ACGT", help="channel letters (default: ACGT)")
    p.add_argument("--quiet", action="store_true", help="no dashboard link, progress bar or summary")
    return p


def _check_scheduler_flag(address):
    """Refuse a --scheduler that is not ``[PROTOCOL://]HOST:PORT`` before anything loads."""
    from fastism_dist.distributed import ClusterChoice

    try:
        ClusterChoice(scheduler=address)
    except FastISMError as err:
        raise FastISMError(f"--scheduler: {err}") from None


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
    for flag, path in (("--tls-ca-file", args.tls_ca_file), ("--tls-cert", args.tls_cert),
                       ("--tls-key", args.tls_key)):
        if path and not os.path.isfile(path):
            raise FastISMError(f"{flag}: file not found: {path}")
    from distributed import Security

    return Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert,
                    tls_client_key=args.tls_key, require_encryption=True)


# ``score`` flags whose argparse destination is the ``score()`` keyword of the same name
SCORE_KEYWORDS = (
    "workers", "threads_per_worker", "gpus", "scheduler", "retries",
    "chunk_size", "read_chunk", "batch_size", "start", "end", "method", "outputs", "tasks",
    "reduce", "dtype", "overwrite", "genome", "resize", "skip_mismatches", "alphabet", "rc",
    "shifts", "ensemble", "group_size", "xla",
)
# ``score`` flags passed only when given: a multi-input model's sequence input and other inputs
MULTI_INPUT_KEYWORDS = ("seq_input", "other_inputs")


def score_keywords(args):
    """The ``score()`` keywords of parsed ``score`` arguments: where every flag is mapped."""
    security = _security(args)
    if args.scheduler and (args.gpus or args.workers):
        raise FastISMError("--scheduler uses the workers of that cluster: drop --workers / --gpus")
    if args.scheduler:
        _check_scheduler_flag(args.scheduler)
    keywords = {name: getattr(args, name) for name in SCORE_KEYWORDS}
    keywords.update(safe_mode=not args.unsafe_model, progress=not args.quiet, security=security)
    keywords.update(_multi_input_keywords(args))
    return keywords


def _multi_input_keywords(args):
    """``seq_input`` / ``other_inputs`` from --seq-input / --other-inputs, where given."""
    keywords = {}
    if args.seq_input is not None:
        keywords["seq_input"] = int(args.seq_input) if args.seq_input.isdigit() else args.seq_input
    if args.other_inputs is not None:
        path = args.other_inputs
        if not path.endswith((".npy", ".npz")):
            raise FastISMError(f"--other-inputs {path}: expected a .npy or .npz file")
        if not os.path.isfile(path):
            raise FastISMError(f"--other-inputs: file not found: {path}")
        keywords["other_inputs"] = path
    return keywords


def check_model_file(path):
    """Raise ``ModelError`` for a MODEL that is a directory or a damaged ``.keras`` archive.

    A ``.keras`` file is a zip archive: every member's checksum is verified, so a file damaged
    in transfer is reported as such instead of failing somewhere inside Keras.
    """
    if os.path.isdir(path):
        raise ModelError(f"{path} is a directory; MODEL must be a .keras or .h5 file")
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return  # missing files and other formats: the loader says what is wrong
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ModelError(f"{path}: cannot load the model: the file is damaged ({err})") from None
    if bad is not None:
        raise ModelError(f"{path}: cannot load the model: the file is damaged "
                         f"(bad checksum of {bad})")


def run_score(args):
    from fastism_dist.distributed.ensemble import model_files

    keywords = score_keywords(args)
    members = model_files(args.model)
    for path in members or [args.model]:
        check_model_file(path)
    _import_tensorflow()
    from fastism_dist.distributed import score

    model = args.model if members is None else members
    score(model, args.input, args.out, log_file=getattr(args, "log_file", None), **keywords)
    return 0


# --------------------------------------------------------------------------- inspect


def add_inspect_parser(subparsers):
    p = subparsers.add_parser(
        "inspect", help="show what fast ISM accelerates in MODEL and its theoretical speedup",
        description=("Print each layer's role (position-wise / local / merge / stop), the width "
                     "of the window recomputed per mutation, naive vs fast multiply-adds per "
                     "mutation, the theoretical speedup and where acceleration stops."))
    p.add_argument("model", metavar="MODEL", help="Keras model file (.keras or .h5)")
    p.add_argument("--start", type=int, default=0, metavar="A", help="first mutated position (default: 0)")
    p.add_argument("--end", type=int, metavar="B", help="mutate positions A..B-1 (default: all)")
    p.add_argument("--seq-input", default="0", metavar="I",
                   help="index or name of the sequence input (default: 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--unsafe-model", action="store_true",
                   help="load the model without Keras safe mode (trusted files only)")
    return p


def run_inspect(args):
    check_model_file(args.model)
    _import_tensorflow()
    from fastism_dist.core import format_report, plan_report

    seq_input = int(args.seq_input) if args.seq_input.isdigit() else args.seq_input
    report = plan_report(args.model, start=args.start, end=args.end, seq_input=seq_input,
                         safe_mode=not args.unsafe_model)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0


# --------------------------------------------------------------------------- plot


def add_plot_parser(subparsers):
    p = subparsers.add_parser(
        "plot", help="plot one sequence of a store: heatmap of differences under a logo",
        description="Save the ISM map of one sequence (the seed paper's Fig. 1b) as a PNG.")
    p.add_argument("store", metavar="STORE", help="Zarr store written by fastism-dist score")
    p.add_argument("--seq", required=True, metavar="ID", help="sequence id (or its 0-based index)")
    p.add_argument("--output", metavar="NAME", help="model output (default: the only one)")
    p.add_argument("--task", metavar="I", help="task index or name (default: the strongest)")
    p.add_argument("--window", type=_positive_int, metavar="W",
                   help="show only the W-wide window with the largest importance (default: all)")
    p.add_argument("--png", required=True, metavar="FILE", help="where to save the PNG")
    return p


def run_plot(args):
    from fastism_dist.analysis import open_results, plot_ism, save_png

    from fastism_dist.store import store_state

    if not os.path.exists(args.store):
        raise FastISMError(f"store not found: {args.store}")
    if store_state(args.store) != "store":
        raise FastISMError(f"{args.store} is not a store written by fastism-dist score")
    ds = open_results(args.store)
    seq = args.seq
    if seq not in set(ds["seq"].values.tolist()) and seq.isdigit():
        seq = int(seq)
    task = int(args.task) if args.task is not None and args.task.isdigit() else args.task
    fig = plot_ism(ds, seq, output=args.output, task=task, window=args.window)
    save_png(fig, args.png)
    print(f"saved {args.png}")
    return 0


# --------------------------------------------------------------------------- demo


def add_demo_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="score the bundled demo sequences with the bundled model and plot one",
        description=("Score 64 bundled sequences with planted AP-1 / HNF4A / CTCF motifs using the "
                     "bundled CNN on a local Dask cluster, write DIR/demo.zarr and save the plot "
                     "of the sequence with the strongest effect."))
    p.add_argument("--out", default="fastism_dist_output/demo", metavar="DIR",
                   help="output directory (default: fastism_dist_output/demo)")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N",
                   help="local worker processes (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no dashboard link or progress bar")
    return p


def run_demo(args):
    _import_tensorflow()
    from fastism_dist.demo import run_demo as demo

    result = demo(args.out, workers=args.workers, progress=not args.quiet,
                  log_file=getattr(args, "log_file", None))
    if args.quiet:  # run_demo says where things are unless quiet
        print(f"store: {result.store}\nplot of {result.seq}: {result.png}")
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [
    ("score", add_score_parser, run_score),
    ("inspect", add_inspect_parser, run_inspect),
    ("plot", add_plot_parser, run_plot),
    ("demo", add_demo_parser, run_demo),
    ("export", add_export_parser, run_export),
]


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


def _import_tensorflow():
    """Import TensorFlow now (its start-up lines go wherever fd 2 points)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass  # reported properly where it is needed


def _say(message):
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _write_traceback(err, log):
    with open(log, "a") as fh:
        fh.write("\n--- fastism-dist: the error\n")
        traceback.print_exception(type(err), err, err.__traceback__, file=fh)


def run_command(args, log):
    """Run the parsed command; returns (exit code, whether the log file is worth keeping).

    Each failure is one line on stderr. A ``FastISMError`` keeps the log where its message names
    it (an error once the cluster was up); an ``OSError`` or an unexpected exception writes its
    traceback to the log and names it.
    """
    try:
        return args._run(args) or 0, False
    except FastISMError as err:
        message = str(err).split("\n")[0]
        named = log in message
        if named:
            _write_traceback(err, log)
        _say(message)
        return EXIT_ERROR, named
    except KeyboardInterrupt:  # score() has said how far it got
        return EXIT_INTERRUPTED, True
    except OSError as err:  # disk full, permissions, a lost connection: not a bug
        _write_traceback(err, log)
        _say(f"{err} (log: {log})")
        return EXIT_ERROR, True
    except Exception as err:  # noqa: BLE001 - a bug: one line here, the traceback in the log
        _write_traceback(err, log)
        first = str(err).splitlines()[0] if str(err) else ""
        _say(f"unexpected {type(err).__name__}: {first} (traceback in {log})")
        return EXIT_BUG, True


def _join_negative_values(argv):
    """``--shifts -1,0,1`` -> ``--shifts=-1,0,1`` (argparse would take -1,0,1 for a flag)."""
    out = []
    for arg in argv:
        joined = out and out[-1] == "--shifts" and arg[:1] == "-" and arg[1:2].isdigit()
        out[-1:] = [f"--shifts={arg}"] if joined else out[-1:] + [arg]
    return out


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    log = args.log_file = new_log_path(args.command)
    keep = False
    try:
        if args.command in LOGGED_COMMANDS:
            with native_output_to(log):
                code, keep = run_command(args, log)
        else:
            code, keep = run_command(args, log)
    finally:
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(log)
    return code


if __name__ == "__main__":
    sys.exit(main())
