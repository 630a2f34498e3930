"""``score --rc --shifts``: the store equals AveragedISM, params record the views, resume checks them."""

import os

import numpy as np
import pytest

from conftest import write_fasta
from fastism_dist import AveragedISM, NaiveISM, open_results
from fastism_dist.cli import main
from fastism_dist.distributed import plan_run
from fastism_dist.io import open_sequences
from fastism_dist.store import read_params


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def _mtimes(out):
    return {name: os.path.getmtime(os.path.join(root, name))
            for root, _, names in os.walk(out) for name in names}


@pytest.mark.cluster
def test_score_rc_shifts_equals_python_and_resume_checks_them(
        tmp_path, two_output_model_path, tiny_fasta, cluster, capsys):
    out = str(tmp_path / "rc.zarr")
    args = ["score", two_output_model_path, tiny_fasta, "--out", out, "--scheduler",
            cluster.scheduler_address, "--chunk-size", "4", "--method", "naive", "--start", "1",
            "--end", "22", "--quiet", "--rc", "--shifts", "-1,0,1"]
    assert main(args) == 0
    x = open_sequences(tiny_fasta).read(slice(None))
    want = AveragedISM(two_output_model_path, rc=True, shifts=1, executor=NaiveISM,
                       start=1, end=22)(x)
    ds = open_results(out)
    for k, name in enumerate(["profile", "counts"]):
        np.testing.assert_allclose(ds[name].values, want.mut[k], atol=1e-5)
    params = read_params(out)
    assert params["rc"] is True and params["shifts"] == [-1, 0, 1]
    # the same views again: nothing to do; other views: one line, exit 2, store untouched
    assert main(args) == 0
    before = _mtimes(out)
    assert main(args[:-3]) == 2
    line = _error_line(capsys)
    assert "rc=true" in line and "rc=null" in line and "--overwrite" in line
    assert main(args[:-2] + ["--shifts", "2"]) == 2
    assert "shifts=[-1, 0, 1]" in _error_line(capsys)
    assert _mtimes(out) == before


def test_params_without_views_unchanged(tmp_path, tiny_model_path, tiny_fasta):
    run = plan_run(tiny_model_path, tiny_fasta, str(tmp_path / "o.zarr"))
    assert "rc" not in run.params() and "shifts" not in run.params() and not run.averaged
    run = plan_run(tiny_model_path, tiny_fasta, str(tmp_path / "o.zarr"), rc=True, shifts="0,2")
    assert run.params()["rc"] is True and run.params()["shifts"] == [0, 2]


def test_bad_view_flags_are_one_line_errors(tmp_path, tiny_model_path, tiny_fasta, capsys):
    import keras

    out = str(tmp_path / "o.zarr")
    for bad in (["--shifts", "abc"], ["--shifts", "-1"], ["--shifts", "30"]):
        assert main(["score", tiny_model_path, tiny_fasta, "--out", out] + bad) == 2
        assert "--shifts" in _error_line(capsys)
    inp = keras.Input((12, 20))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))
    model.save(path := str(tmp_path / "protein.keras"))
    fasta = write_fasta(tmp_path / "p.fa", ["ACDEFGHIKLMN", "PQRSTVWYACDE"])
    assert main(["score", path, fasta, "--out", out, "--alphabet", "ACDEFGHIKLMNPQRSTVWY",
                 "--rc"]) == 2
    assert "--rc needs DNA" in _error_line(capsys)
    assert not os.path.exists(out)
