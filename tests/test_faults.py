"""The store under faults, through the real command line: nothing lost, nothing silently mixed.

Each test runs ``fastism-dist score`` as a subprocess on a tiny model (L = 24), and checks its
exit code, its one-line message and the store on disk: byte for byte unchanged where a run
failed, or exactly as a clean run of the same command leaves it. Runs that are killed, or refused
before any cluster starts, start a local cluster of one worker; the others run on the session's
shared cluster (``--scheduler``), which spares each a cluster start.
"""

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from conftest import LENGTH, random_letters, write_fasta
from oracle import one_hot

from fastism_dist.distributed.hashes import file_fingerprint
from fastism_dist.store import ATTR_RUN_ID, DONE, done_mask

CLI = os.path.join(os.path.dirname(sys.executable), "fastism-dist")
COMMON = ["--method", "naive", "--quiet"]
LOCAL_CLUSTER = ["--workers", "1"]
RUN_TIMEOUT_S = 300


def _command(model, input, out, extra, scheduler=None):
    """The ``fastism-dist score`` command line, on a local cluster or on ``scheduler``'s."""
    where = ["--scheduler", scheduler] if scheduler else LOCAL_CLUSTER
    return [CLI, "score", str(model), str(input), "--out", str(out), *COMMON, *where, *extra]


def score(model, input, out, *extra, scheduler=None):
    """Run ``fastism-dist score`` on a local cluster, or on the cluster of ``scheduler`` (an
    address); returns (exit code, the ``error:`` lines of stderr, stdout)."""
    done = subprocess.run(_command(model, input, out, extra, scheduler), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    return done.returncode, _error_lines(done.stderr), done.stdout


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def start(model, input, out, *extra, log):
    """Start ``fastism-dist score`` in its own process group (so a kill takes its workers too)."""
    return subprocess.Popen(_command(model, input, out, extra), stdout=log, stderr=log,
                            start_new_session=True)


def snapshot(path):
    """Relative path -> SHA-256 of every file under ``path``."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                files[os.path.relpath(full, path)] = hashlib.sha256(fh.read()).hexdigest()
    return files


def siblings(out):
    """Whatever a run left beside the store ``out`` (templates, new or old stores)."""
    return sorted(glob.glob(glob.escape(str(out)) + ".fastism-*"))


def assert_same_results(path, clean):
    """The store at ``path`` holds what the clean run's store holds (its run id aside): the same
    files, arrays and attributes."""
    assert sorted(snapshot(path)) == sorted(snapshot(clean))
    got, want = zarr.open_group(str(path), mode="r"), zarr.open_group(str(clean), mode="r")
    assert sorted(got.array_keys()) == sorted(want.array_keys())
    for name in want.array_keys():
        assert got[name].shape == want[name].shape and got[name].chunks == want[name].chunks, name
        np.testing.assert_array_equal(got[name][...], want[name][...], err_msg=name)
    got_attrs, want_attrs = dict(got.attrs), dict(want.attrs)
    assert got_attrs.pop(ATTR_RUN_ID) != want_attrs.pop(ATTR_RUN_ID)
    assert got_attrs == want_attrs


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def fasta(work):
    """Six random 24 bp sequences."""
    return write_fasta(work / "six.fa", random_letters(6, LENGTH, seed=5))


@pytest.fixture(scope="module")
def clean(work, tiny_model_path, fasta, scheduler_address):
    """A clean run on ``fasta`` in chunks of 2 (three chunks)."""
    out = work / "clean.zarr"
    code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2",
                            scheduler=scheduler_address)
    assert code == 0 and not errors
    return out


@pytest.fixture(scope="module")
def clean_end20(work, tiny_model_path, fasta, scheduler_address):
    """A clean run on ``fasta`` with other parameters (``--end 20``)."""
    out = work / "clean_end20.zarr"
    code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2", "--end", "20",
                            scheduler=scheduler_address)
    assert code == 0 and not errors
    return out


def _copy(store, tmp_path, name="out.zarr"):
    out = tmp_path / name
    shutil.copytree(store, out)
    return out


def test_overwrite_with_bad_arrays_keeps_the_store(tmp_path, tiny_model_path, clean):
    """A .npy with a NaN, or of integer tokens, is refused on the client before anything moves."""
    out = _copy(clean, tmp_path)
    before = snapshot(out)
    x = one_hot(random_letters(4, LENGTH, seed=1)).astype(np.float32)
    x[2, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    tokens = np.random.default_rng(0).integers(0, 4, (4, LENGTH, 4))
    tokens[0] = np.eye(4, dtype=np.int64)[0]  # the first sequence looks one-hot
    np.save(tmp_path / "tokens.npy", tokens)
    bad = int(np.argmax(tokens[1].sum(axis=-1) > 1))  # the first position that is not one-hot

    code, errors, _ = score(tiny_model_path, tmp_path / "nan.npy", out, "--overwrite")
    assert code == 2 and len(errors) == 1
    assert f"{tmp_path / 'nan.npy'}: sequence #3 position 5: non-finite value" in errors[0]
    code, errors, _ = score(tiny_model_path, tmp_path / "tokens.npy", out, "--overwrite")
    assert code == 2 and len(errors) == 1
    assert f"tokens.npy: sequence #2 position {bad + 1}: " in errors[0]
    assert "not one-hot" in errors[0]
    assert snapshot(out) == before and siblings(out) == []


def test_overwrite_failing_on_the_workers_keeps_the_store(tmp_path, tiny_model_path, clean, fasta,
                                                          scheduler_address):
    """A model whose NaN weights only the worker's self-check finds: the old store stays."""
    import keras

    model = keras.models.load_model(tiny_model_path)
    kernel, bias = model.layers[1].get_weights()
    kernel[0, 0, 0] = np.nan
    model.layers[1].set_weights([kernel, bias])
    model.save(tmp_path / "nan_weights.keras")
    out = _copy(clean, tmp_path)
    before = snapshot(out)

    code, errors, _ = score(tmp_path / "nan_weights.keras", fasta, out, "--chunk-size", "2",
                            "--overwrite", "--method", "fast", scheduler=scheduler_address)
    assert code == 2 and len(errors) == 1 and "self-check failed" in errors[0]
    assert snapshot(out) == before
    assert siblings(out) == []  # the new store held nothing and is gone


def test_overwrite_replaces_the_store_when_the_run_succeeds(tmp_path, tiny_model_path, fasta,
                                                           clean, clean_end20, scheduler_address):
    out = _copy(clean, tmp_path)
    code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2", "--end", "20",
                            "--overwrite", scheduler=scheduler_address)
    assert code == 0 and not errors
    assert_same_results(out, clean_end20)
    assert siblings(out) == []


def test_an_interrupted_overwrite_continues_its_new_store(tmp_path, tiny_model_path, fasta, clean,
                                                         clean_end20, scheduler_address):
    """The unfinished new store of an --overwrite run is continued by the same command."""
    out = _copy(clean, tmp_path)
    staged = _copy(clean_end20, tmp_path, "out.zarr.fastism-new-0123456789ab")
    group = zarr.open_group(str(staged), mode="r+", use_consolidated=False)
    group[DONE][1] = 0  # as a run stopped before its second chunk would leave it
    group["y"][2:4] = np.nan
    group["y_ref"][2:4] = np.nan
    meta = json.loads((staged / "zarr.json").read_text())
    meta["attributes"][ATTR_RUN_ID] = "0123456789ab"  # the interrupted run's
    (staged / "zarr.json").write_text(json.dumps(meta))

    code, errors, stdout = score(tiny_model_path, fasta, out, "--chunk-size", "2", "--end", "20",
                                 "--overwrite", scheduler=scheduler_address)
    assert code == 0 and not errors
    assert zarr.open_group(str(out)).attrs[ATTR_RUN_ID] == "0123456789ab"  # continued, not new
    assert_same_results(out, clean_end20)
    assert siblings(out) == []


def test_a_template_without_done_is_recreated(tmp_path, tiny_model_path, fasta, clean,
                                              scheduler_address):
    """A store whose creation was killed before ``done`` was written (no KeyError: 'done')."""
    out = _copy(clean, tmp_path)
    shutil.rmtree(out / DONE)
    code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2",
                            scheduler=scheduler_address)
    assert code == 0 and not errors
    assert_same_results(out, clean)
    assert siblings(out) == []


def test_sigkill_while_the_store_is_created(tmp_path, tiny_model_path, fasta, clean,
                                            scheduler_address):
    """Killed at a random moment around the template: each rerun ends as a clean run does."""
    rng = np.random.default_rng(7)
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}.zarr"
        with open(tmp_path / f"killed{attempt}.log", "wb") as log:
            proc = start(tiny_model_path, fasta, out, "--chunk-size", "2", log=log)
            _wait_for_store_files(out, proc)
            time.sleep(rng.uniform(0.0, 0.4))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2",
                                scheduler=scheduler_address)
        assert code == 0 and not errors, (attempt, errors)
        assert_same_results(out, clean)


def _wait_for_store_files(out, proc, timeout_s=RUN_TIMEOUT_S):
    """Return as soon as the store or its template appears (or the run ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(out) or siblings(out):
            return
        time.sleep(0.005)


def _write_genome(path, letters_of):
    """A FASTA of chromosomes ``chr1`` (600 bp) and ``chr2`` (400 bp) from ``letters_of(n, seed)``."""
    with open(path, "w") as fh:
        for seed, (name, size) in enumerate((("chr1", 600), ("chr2", 400))):
            fh.write(f">{name}\n{letters_of(size, seed)}\n")


def test_a_rewritten_genome_is_a_mismatch(tmp_path, tiny_model_path, scheduler_address):
    """The genome at the same path with other bases: resume refuses; --overwrite scores it anew."""
    genome = tmp_path / "genome.fa"
    _write_genome(genome, lambda n, seed: random_letters(1, n, seed)[0])
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t100\t124\nchr1\t300\t324\nchr2\t50\t74\nchr2\t200\t224\n")
    out = tmp_path / "bed.zarr"
    args = (tiny_model_path, bed, out, "--genome", str(genome), "--chunk-size", "2")
    code, errors, _ = score(*args, scheduler=scheduler_address)
    assert code == 0 and not errors
    before = snapshot(out)
    old_letters = zarr.open_group(str(out))["ref_base"][...]

    complement = str.maketrans("ACGT", "TGCA")
    _write_genome(genome, lambda n, seed: random_letters(1, n, seed)[0].translate(complement))
    code, errors, _ = score(*args, scheduler=scheduler_address)
    assert code == 2 and len(errors) == 1
    assert "genome_content=" in errors[0] and "--overwrite" in errors[0]
    assert snapshot(out) == before

    code, errors, _ = score(*args, "--overwrite", scheduler=scheduler_address)
    assert code == 0 and not errors
    group = zarr.open_group(str(out))
    assert json.loads(group.attrs["params"])["genome_content"] == file_fingerprint(str(genome))
    np.testing.assert_array_equal(group["ref_base"][...],
                                  np.vectorize(lambda b: b.translate(complement))(old_letters))
    assert done_mask(str(out)).all()


def test_a_replaced_store_refuses_the_old_runs_chunks(tmp_path, tiny_model_path, fasta, clean_end20,
                                                      scheduler_address):
    """Two runs at once on one store, the second with --overwrite: the second's store is whole
    and clean, the first stops saying its store was replaced."""
    # enough one-sequence chunks that the first run is still going when the second swaps its
    # store in, however slow the machine (it stops at its first write after that)
    many = write_fasta(tmp_path / "many.fa", random_letters(6000, LENGTH, seed=3))
    out = tmp_path / "shared.zarr"
    with open(tmp_path / "first.log", "w") as log:
        first = start(tiny_model_path, many, out, "--chunk-size", "1", log=log)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while first.poll() is None and time.monotonic() < deadline:
            if os.path.exists(out / DONE) and done_mask(str(out)).sum() >= 3:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        code, errors, _ = score(tiny_model_path, fasta, out, "--chunk-size", "2", "--end", "20",
                                "--overwrite", scheduler=scheduler_address)
        first_code = first.wait(timeout=RUN_TIMEOUT_S)
    assert code == 0 and not errors
    assert_same_results(out, clean_end20)
    assert siblings(out) == []
    first_errors = _error_lines((tmp_path / "first.log").read_text())
    assert first_code == 2 and len(first_errors) == 1, first_errors
    assert "was replaced by another run" in first_errors[0] and "was not written" in first_errors[0]


def test_out_where_workers_cannot_write(tmp_path, tiny_model_path, fasta):
    """Refused with one line before any cluster starts."""
    if os.geteuid() == 0:  # root writes in any chmod-ed folder; /sys refuses everyone
        read_only = "/sys"
    else:
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        read_only.chmod(0o555)
    code, errors, stdout = score(tiny_model_path, fasta, f"{read_only}/out.zarr")
    assert code == 2 and len(errors) == 1
    assert f"--out {read_only}/out.zarr: cannot write in {read_only}" in errors[0]
    assert "scoring" not in stdout

    code, errors, stdout = score(tiny_model_path, fasta, "memory://runs/out.zarr")
    assert code == 2 and len(errors) == 1
    assert "local-memory stores cannot be shared with worker processes" in errors[0]
    assert "scoring" not in stdout


def test_the_content_of_a_large_file_is_its_size_time_and_ends(tmp_path):
    """Above 64 MiB a file is identified by size, mtime_ns and its first and last MiB."""
    small = tmp_path / "small.bin"
    small.write_bytes(b"ACGT" * 1000)
    assert file_fingerprint(str(small)) == "sha256:" + hashlib.sha256(b"ACGT" * 1000).hexdigest()

    big = tmp_path / "big.bin"
    size = 65 * 2**20
    with open(big, "wb") as fh:
        fh.truncate(size)  # sparse: no 65 MiB written
    first = file_fingerprint(str(big))
    assert first.startswith(f"size:{size} mtime_ns:{os.stat(big).st_mtime_ns} ends_sha256:")
    stamp = os.stat(big).st_mtime_ns
    with open(big, "r+b") as fh:
        fh.seek(size - 10)
        fh.write(b"x")
    os.utime(big, ns=(stamp, stamp))
    assert file_fingerprint(str(big)) != first  # the last MiB changed, the time did not
    with open(big, "r+b") as fh:
        fh.seek(size - 10)
        fh.write(b"\0")
    os.utime(big, ns=(stamp, stamp))
    assert file_fingerprint(str(big)) == first
    os.utime(big, ns=(stamp + 1, stamp + 1))
    assert file_fingerprint(str(big)) != first  # touched
