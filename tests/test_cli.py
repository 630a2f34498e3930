"""The ``fastism-dist`` command line: help, one-line errors, score, interrupt and resume."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import LENGTH, random_letters, write_fasta
from fastism_dist import NaiveISM, open_results
from fastism_dist.cli import main
from fastism_dist.distributed import score
from fastism_dist.io import open_sequences
from fastism_dist.store import done_mask

CLI = [sys.executable, "-m", "fastism_dist.cli"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert err[-1].startswith("error: ")
    return err[-1]


def test_help_does_not_import_tensorflow():
    code = ("import sys; from fastism_dist.cli import main; rc = main(['--help']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'distributed', 'xarray') if m in sys.modules]; "
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert "score" in out.stdout


def test_score_help_lists_flags(capsys):
    assert main(["score", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--workers", "--gpus", "--scheduler", "--chunk-size", "--batch-size",
                 "--start", "--end", "--method", "--genome", "--outputs", "--dtype",
                 "--overwrite", "--threads-per-worker", "--tls-ca-file", "--tls-cert",
                 "--tls-key", "--unsafe-model", "--resize", "--skip-mismatches"):
        assert flag in text


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["score", "m.keras"]) == 2  # no INPUT, no --out
    assert main(["score", "m.keras", "in.fa", "--out", "o.zarr", "--workers", "0"]) == 2


def test_every_score_flag_becomes_a_score_keyword():
    import argparse
    import inspect

    from fastism_dist.cli import (MULTI_INPUT_KEYWORDS, SCORE_KEYWORDS, add_score_parser,
                                  score_keywords)
    from fastism_dist.distributed import plan_run

    parser = add_score_parser(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["m.keras", "in.fa", "--out", "o.zarr", "--chunk-size", "3",
                              "--reduce", "profile=jsd", "--tasks", "0", "--end", "9",
                              "--unsafe-model", "--quiet", "--skip-mismatches"])
    keywords = score_keywords(args)
    accepted = set(inspect.signature(score).parameters) | set(inspect.signature(plan_run).parameters)
    assert set(keywords) <= accepted
    assert keywords["chunk_size"] == 3 and keywords["reduce"] == "profile=jsd"
    assert keywords["tasks"] == "0" and keywords["end"] == 9 and keywords["skip_mismatches"]
    assert keywords["safe_mode"] is False and keywords["progress"] is False
    assert keywords["security"] is None and keywords["retries"] == 3
    assert keywords["xla"] == "auto"
    assert score_keywords(parser.parse_args(["m.keras", "in.fa", "--out", "o.zarr", "--xla",
                                             "off"]))["xla"] == "off"
    # every flag is mapped: the ones with another name, and the rest under their own
    own = {"help", "model", "input", "out", "tls_ca_file", "tls_cert", "tls_key", "unsafe_model",
           "quiet"}
    assert {a.dest for a in parser._actions} - own == set(SCORE_KEYWORDS) | set(MULTI_INPUT_KEYWORDS)
    # the multi-input flags are passed only when given
    assert not set(MULTI_INPUT_KEYWORDS) & set(keywords)
    other = parser.parse_args(["m.keras", "in.fa", "--out", "o.zarr", "--seq-input", "1"])
    assert score_keywords(other)["seq_input"] == 1
    other = parser.parse_args(["m.keras", "in.fa", "--out", "o.zarr", "--seq-input", "dna"])
    assert score_keywords(other)["seq_input"] == "dna"


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_model_path, lambda_model_path, capsys):
    out = str(tmp_path / "out.zarr")
    fasta = write_fasta(tmp_path / "in.fa", random_letters(3, LENGTH))
    assert main(["score", str(tmp_path / "missing.keras"), fasta, "--out", out]) == 2
    assert "model file not found" in _error_line(capsys)
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    assert main(["score", tiny_model_path, str(empty), "--out", out]) == 2
    assert "empty.fa" in _error_line(capsys)
    assert main(["score", lambda_model_path, fasta, "--out", out]) == 2
    assert "safe mode" in _error_line(capsys)
    assert main(["score", tiny_model_path, fasta, "--out", out, "--end", "99"]) == 2
    assert "end=99" in _error_line(capsys)
    assert main(["score", tiny_model_path, fasta, "--out", out, "--method", "naive",
                 "--xla", "on"]) == 2
    assert "--xla on: only method 'fast'" in _error_line(capsys)
    assert main(["score", tiny_model_path, fasta, "--out", out, "--tls-ca-file", "ca.pem"]) == 2
    assert "tls://" in _error_line(capsys)
    assert main(["score", tiny_model_path, fasta, "--out", out, "--scheduler", "tls://127.0.0.1:1"]) == 2
    assert "--tls-ca-file" in _error_line(capsys)
    assert not os.path.exists(out)


def test_gpus_without_dask_cuda_or_gpu(tmp_path, tiny_model_path, capsys):
    fasta = write_fasta(tmp_path / "in.fa", random_letters(2, LENGTH))
    rc = main(["score", tiny_model_path, fasta, "--out", str(tmp_path / "o.zarr"), "--gpus"])
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        assert rc == 2
        assert "dask-cuda" in _error_line(capsys)
        return
    if rc == 2:  # dask-cuda but no GPU
        assert "GPU" in _error_line(capsys)


@pytest.mark.cluster
def test_score_resume_and_mismatch(tmp_path, tiny_model_path, tiny_fasta, cluster, capsys):
    out = str(tmp_path / "out.zarr")
    args = ["score", tiny_model_path, tiny_fasta, "--out", out, "--scheduler",
            cluster.scheduler_address, "--chunk-size", "4", "--method", "naive", "--start", "2",
            "--end", "20"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "dashboard: http://127.0.0.1:" in printed
    assert "mutations/s" in printed and "3 computed" in printed
    ds = open_results(out)
    want = NaiveISM(tiny_model_path, start=2, end=20)(open_sequences(tiny_fasta).read(slice(None)))
    np.testing.assert_allclose(ds["y"].values, want.mut[0], atol=1e-6)
    assert list(ds["pos"].values) == list(range(2, 20))
    # the same command again: nothing to do
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out
    # other parameters: one-line error naming the parameter, store untouched
    before = {name: os.path.getmtime(os.path.join(root, name))
              for root, _, names in os.walk(out) for name in names}
    assert main(args[:-1] + ["21"]) == 2
    line = _error_line(capsys)
    assert "end=20" in line and "end=21" in line and "--overwrite" in line
    after = {name: os.path.getmtime(os.path.join(root, name))
             for root, _, names in os.walk(out) for name in names}
    assert before == after
    assert main(args[:-1] + ["21", "--overwrite", "--quiet"]) == 0
    assert open_results(out).sizes["pos"] == 19


@pytest.mark.cluster
def test_lambda_model_with_unsafe_flag(tmp_path, lambda_model_path, tiny_fasta, cluster, capsys):
    out = str(tmp_path / "out.zarr")
    assert main(["score", lambda_model_path, tiny_fasta, "--out", out, "--scheduler",
                 cluster.scheduler_address, "--method", "naive", "--unsafe-model", "--quiet"]) == 0
    assert open_results(out)["done"].values.all()


@pytest.mark.cluster
def test_interrupted_cli_resumes_missing_chunks(tmp_path, tiny_model_path, cluster):
    """Ctrl-C (SIGINT) the CLI after a few chunks; the rerun computes only the missing ones."""
    import psutil

    n = 400  # enough chunks that the run cannot finish before the interrupt lands
    fasta = write_fasta(tmp_path / "in.fa", random_letters(n, LENGTH, seed=9))
    out = str(tmp_path / "out.zarr")
    args = ["score", tiny_model_path, fasta, "--out", out, "--chunk-size", "1", "--method", "naive"]
    # SIGINT back to its default in the child: a shell running tests in the background
    # (`cmd &`) starts them with SIGINT ignored, and Python would then never see Ctrl-C.
    proc = subprocess.Popen(CLI + args + ["--workers", "1", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.time()
        done = 0
        while done < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.time() - t0 < 180, "no chunks done"
            try:
                done = int(done_mask(out).sum())
            except Exception:  # template not written yet
                pass
            time.sleep(0.02)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    # one line, naming the log that holds what the cluster and its worker wrote
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("interrupted: ") and "rerun the same command" in lines[0]
    log = lines[0].rsplit("(log: ", 1)[1].rstrip(")")
    assert log.startswith(str(tmp_path / "cache")) and os.path.getsize(log) > 0
    psutil.wait_procs(children, timeout=30)  # no worker left writing
    done = int(done_mask(out).sum())
    assert 2 <= done < n
    summary = score(tiny_model_path, fasta, out, scheduler=cluster.scheduler_address,
                    method="naive", progress=False)
    assert summary.chunks_skipped == done and summary.chunks_run == n - done
    ds = open_results(out)
    assert ds["done"].values.all()
    want = NaiveISM(tiny_model_path)(open_sequences(fasta).read(slice(None)))
    np.testing.assert_allclose(ds["y"].values, want.mut[0], atol=1e-6)
    np.testing.assert_allclose(ds["y_ref"].values, want.ref[0], atol=1e-6)


class DropsWithCtrlC:
    """An object whose finalizer is running when Ctrl-C arrives."""

    def __del__(self):
        raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_that_lands_in_a_finalizer_still_interrupts():
    """Python drops an exception raised in ``__del__``; inside a run it is raised again."""
    from fastism_dist.distributed.interrupt import redeliver_lost_interrupts

    # a shell running tests in the background starts them with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with redeliver_lost_interrupts():
                DropsWithCtrlC()
                deadline = time.time() + 10
                while time.time() < deadline:  # the run goes on waiting for its cluster
                    time.sleep(0.01)
        DropsWithCtrlC()  # outside a run: Python's own behaviour, nothing raised
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
