"""What a user sees when something goes wrong: one ``error:`` line, exit code 2, nothing written.

Each test runs the real command line in its own process (its stderr is what a terminal shows)
with the cache folder, where run logs go, inside the test's temporary directory.
"""

import os
import re
import resource
import shutil
import subprocess
import sys
import time

import pytest

from conftest import LENGTH, random_letters, write_fasta

CLI = [sys.executable, "-m", "fastism_dist.cli"]
BAR = re.compile(r"^\s*\d+%\|.*\| \d+/\d+ \[.*chunk.*\]\s*$")  # one tqdm refresh


def run_cli(args, tmp_path, timeout=300, preexec_fn=None):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path, preexec_fn=preexec_fn)


def error_line(run):
    """The one line a failed run printed on stderr (exit code 2, no traceback)."""
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-3000:]
    return lines[0]


def files_under(path):
    """Every file below ``path``, outside the cache folder (matplotlib's font cache, logs)."""
    found = (os.path.relpath(os.path.join(root, name), path)
             for root, _, names in os.walk(path) for name in names)
    return sorted(f for f in found if not f.startswith("cache" + os.sep))


def logs(tmp_path):
    folder = tmp_path / "cache" / "fastism_dist" / "logs"
    return sorted(folder.glob("*.log")) if folder.is_dir() else []


@pytest.fixture
def fasta(tmp_path):
    return write_fasta(tmp_path / "in.fa", random_letters(3, LENGTH, seed=4))


def test_scheduler_that_is_not_an_address_fails_at_once(tmp_path, tiny_model_path, fasta):
    before = files_under(tmp_path)
    t0 = time.perf_counter()
    run = run_cli(["score", tiny_model_path, fasta, "--out", tmp_path / "out.zarr",
                   "--scheduler", "notanaddress"], tmp_path)
    seconds = time.perf_counter() - t0
    line = error_line(run)
    assert "--scheduler" in line and "'notanaddress' is not a scheduler address" in line
    assert "tcp://HOST:PORT" in line
    assert seconds < 20, f"took {seconds:.0f} s"  # no connection attempt, no model loaded
    assert files_under(tmp_path) == before


def test_damaged_keras_file(tmp_path, tiny_model_path, fasta):
    damaged = tmp_path / "damaged.keras"
    data = bytearray(open(tiny_model_path, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    damaged.write_bytes(bytes(data))
    before = files_under(tmp_path)
    line = error_line(run_cli(["score", damaged, fasta, "--out", tmp_path / "out.zarr"], tmp_path))
    assert line.startswith(f"error: {damaged}: cannot load the model: the file is damaged")
    line = error_line(run_cli(["inspect", damaged], tmp_path))
    assert "the file is damaged" in line
    assert files_under(tmp_path) == before


def test_directory_as_model(tmp_path, fasta):
    model_dir = tmp_path / "model.keras"
    model_dir.mkdir()
    before = files_under(tmp_path)
    line = error_line(run_cli(["score", model_dir, fasta, "--out", tmp_path / "out.zarr"], tmp_path))
    assert line == f"error: {model_dir} is a directory; MODEL must be a .keras or .h5 file"
    assert files_under(tmp_path) == before and not logs(tmp_path)


def test_plot_of_a_directory_that_is_not_a_store(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    before = files_under(tmp_path)
    line = error_line(run_cli(["plot", folder, "--seq", "s0", "--png", tmp_path / "s0.png"], tmp_path))
    assert line == f"error: {folder} is not a store written by fastism-dist score"
    assert files_under(tmp_path) == before


def test_demo_out_is_an_existing_file(tmp_path):
    target = tmp_path / "demo-out"
    target.write_text("a file")
    before = files_under(tmp_path)
    line = error_line(run_cli(["demo", "--out", target, "--quiet"], tmp_path))
    assert line.startswith(f"error: {target} exists and is not a directory")
    assert files_under(tmp_path) == before and target.read_text() == "a file"


def test_bad_flag_values_name_the_flags(tmp_path, tiny_model_path, fasta):
    line = error_line(run_cli(["score", tiny_model_path, fasta, "--out", tmp_path / "o.zarr",
                               "--other-inputs", tmp_path / "other.txt"], tmp_path))
    assert line.startswith("error: --other-inputs") and ".npy or .npz" in line
    long_fasta = write_fasta(tmp_path / "long.fa", random_letters(2, LENGTH + 6, seed=5))
    line = error_line(run_cli(["score", tiny_model_path, long_fasta, "--out", tmp_path / "o.zarr"],
                              tmp_path))
    assert "--resize" in line and "expected 24" in line
    assert not os.path.exists(tmp_path / "o.zarr")


@pytest.mark.cluster
def test_normal_run_shows_only_the_progress_bar(tmp_path, tiny_model_path, fasta):
    run = run_cli(["score", tiny_model_path, fasta, "--out", tmp_path / "out.zarr",
                   "--workers", "1", "--method", "naive"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    refreshes = [part for part in re.split(r"[\r\n]", run.stderr) if part.strip()]
    assert refreshes and all(BAR.match(part) for part in refreshes), run.stderr[-3000:]
    assert "3 computed" in run.stdout and "worker tls://127.0.0.1:" in run.stdout
    assert not logs(tmp_path)  # a run that worked leaves no log behind


def _limit_file_size():
    """Files of the command and its workers may not grow past 200 kB, as on a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


@pytest.mark.cluster
def test_worker_error_is_one_line_naming_the_log(tmp_path, model_dir):
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((LENGTH, 4))
    hidden = keras.layers.Conv1D(4, 5, padding="same", activation="relu")(inp)
    wide = keras.Model(inp, keras.layers.Conv1D(64, 3, padding="same", name="y")(hidden))
    model = str(model_dir / "wide_output.keras")
    wide.save(model)  # (24, 64) outputs: a chunk of 6 sequences is over 500 kB compressed
    fasta = write_fasta(tmp_path / "six.fa", random_letters(6, LENGTH, seed=6))
    run = run_cli(["score", model, fasta, "--out", tmp_path / "out.zarr", "--workers", "1",
                   "--chunk-size", "6", "--method", "naive", "--retries", "0", "--quiet"],
                  tmp_path, preexec_fn=_limit_file_size)
    line = error_line(run)
    assert line.startswith("error: chunk 0 failed (OSError: [Errno 27] File too large)")
    assert "rerun the same command to resume" in line
    [log] = logs(tmp_path)
    assert line.endswith(f"(log: {log})")
    text = log.read_text()
    assert "distributed.worker - ERROR - Compute Failed" in text  # the worker's own report
    assert "Traceback" in text and "File too large" in text
    shutil.rmtree(tmp_path / "out.zarr")
