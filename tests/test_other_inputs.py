"""A multi-input model's other inputs in ``score``: checked on the client, recorded in params.

The run through a cluster is in ``test_cli_commands.test_score_multi_input_model``; these tests
plan runs only (no cluster), so every bad input is seen before anything starts.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest

from fastism_dist.distributed import plan_run
from fastism_dist.distributed.run import write_template
from fastism_dist.errors import FastISMError, InputError, ModelError, StoreMismatchError
from oracle import random_one_hot

LENGTH, N = 20, 4


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory):
    """# dna -> C -> F -+-> Concat -> D -> y
    #     cell -> D ---+"""
    keras.utils.set_random_seed(3)
    layers = keras.layers
    dna = keras.Input((LENGTH, 4), name="dna")
    cell = keras.Input((3,), name="cell")
    h = layers.Flatten()(layers.Conv1D(4, 5, activation="relu")(dna))
    y = layers.Dense(2, name="y")(layers.Concatenate()([h, layers.Dense(4)(cell)]))
    path = tmp_path_factory.mktemp("models") / "two_inputs.keras"
    keras.Model([cell, dna], y).save(path)
    return str(path)


@pytest.fixture
def sequences(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, random_one_hot(N, LENGTH, seed=1))
    return str(path)


def cell_values(rows=N, seed=2):
    return np.random.default_rng(seed).normal(size=(rows, 3)).astype(np.float32)


def plan(model, sequences, tmp_path, **options):
    return plan_run(model, sequences, str(tmp_path / "out.zarr"), seq_input="dna", **options)


def test_files_and_arrays_give_the_rows_and_params(two_input_model, sequences, tmp_path):
    np.savez(tmp_path / "o.npz", cell=cell_values())
    np.save(tmp_path / "o.npy", cell_values())
    runs = [plan(two_input_model, sequences, tmp_path, other_inputs=other) for other in (
        str(tmp_path / "o.npz"), str(tmp_path / "o.npy"), {"cell": cell_values()}, [cell_values()])]
    for run in runs:
        assert run.params()["seq_input"] == "dna"
        assert run.params()["other_inputs"] == ["cell"]
        np.testing.assert_array_equal(run.other_inputs.read(slice(1, 3))[0], cell_values()[1:3])
    assert runs[2].params()["other_inputs_content"] == runs[3].params()["other_inputs_content"]
    assert runs[0].params()["other_inputs_content"] != runs[1].params()["other_inputs_content"]


def test_single_input_params_have_no_other_inputs(tiny_model_path, tiny_npy, tmp_path):
    params = plan_run(tiny_model_path, tiny_npy, str(tmp_path / "out.zarr")).params()
    assert not {"seq_input", "other_inputs", "other_inputs_content"} & set(params)


@pytest.mark.parametrize("other, message", [
    (None, "besides the sequence 'dna': give them with --other-inputs"),
    ({"cells": cell_values()}, "other_inputs has no entry 'cell'"),
    ({"cell": cell_values(rows=3)}, "input 'cell' has shape (3, 3), expected (4, 3)"),
    ({"cell": cell_values()[:, :2]}, "input 'cell' has shape (4, 2), expected (4, 3)"),
])
def test_bad_other_inputs_are_named(two_input_model, sequences, tmp_path, other, message):
    with pytest.raises(FastISMError) as err:
        plan(two_input_model, sequences, tmp_path, other_inputs=other)
    assert message in str(err.value)
    assert not (tmp_path / "out.zarr").exists()


def test_nan_in_an_other_input_names_its_row(two_input_model, sequences, tmp_path):
    values = cell_values()
    values[2, 1] = np.nan
    np.savez(tmp_path / "o.npz", cell=values)
    with pytest.raises(InputError, match=r"input 'cell' has a NaN or infinite value in row 2"):
        plan(two_input_model, sequences, tmp_path, other_inputs=str(tmp_path / "o.npz"))


def test_npz_without_the_input_name(two_input_model, sequences, tmp_path):
    np.savez(tmp_path / "o.npz", arr_0=cell_values())
    with pytest.raises(InputError, match=r"o.npz: no array named 'cell' \(it has \['arr_0'\]"):
        plan(two_input_model, sequences, tmp_path, other_inputs=str(tmp_path / "o.npz"))


def test_other_inputs_for_a_single_input_model(tiny_model_path, tiny_npy, tmp_path):
    np.save(tmp_path / "o.npy", cell_values())
    with pytest.raises(ModelError, match="the model's only input is the sequence"):
        plan_run(tiny_model_path, tiny_npy, str(tmp_path / "out.zarr"),
                 other_inputs=str(tmp_path / "o.npy"))


def test_unknown_sequence_input_name(two_input_model, sequences, tmp_path):
    with pytest.raises(ModelError, match=r"no input named 'seq'; its inputs are \['cell', 'dna'\]"):
        plan_run(two_input_model, sequences, str(tmp_path / "out.zarr"), seq_input="seq",
                 other_inputs={"cell": cell_values()})


def test_changed_other_inputs_file_is_refused_on_resume(two_input_model, sequences, tmp_path):
    np.savez(tmp_path / "o.npz", cell=cell_values())
    write_template(plan(two_input_model, sequences, tmp_path, other_inputs=str(tmp_path / "o.npz")))
    np.savez(tmp_path / "o.npz", cell=cell_values(seed=5))
    with pytest.raises(StoreMismatchError, match="other_inputs_content"):
        plan(two_input_model, sequences, tmp_path, other_inputs=str(tmp_path / "o.npz"))


def test_cli_names_the_missing_array_in_one_line(two_input_model, sequences, tmp_path):
    np.savez(tmp_path / "o.npz", cells=cell_values())
    run = subprocess.run([sys.executable, "-m", "fastism_dist.cli", "score", two_input_model,
                          sequences, "--out", str(tmp_path / "out.zarr"), "--seq-input", "dna",
                          "--other-inputs", str(tmp_path / "o.npz")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no array named 'cell'" in lines[0], run.stderr[-2000:]
    assert not (tmp_path / "out.zarr").exists()


def test_a_file_changed_during_the_run_is_refused_not_mixed(two_input_model, sequences, tmp_path):
    """A worker loads the file once and keeps it; one that loads it after it changed refuses
    it, so no chunk is scored with other inputs than those the run was planned on."""
    from fastism_dist.distributed import other_inputs as module

    path = str(tmp_path / "o.npz")
    np.savez(path, cell=cell_values())
    run = plan(two_input_model, sequences, tmp_path, other_inputs=path)
    module._LOADED.clear()  # as in a fresh worker
    np.testing.assert_array_equal(run.other_inputs.read(slice(0, 2))[0], cell_values()[:2])
    np.savez(path, cell=cell_values(seed=5))
    np.testing.assert_array_equal(run.other_inputs.read(slice(2, 4))[0], cell_values()[2:4])
    module._LOADED.clear()  # a worker that joins after the change
    with pytest.raises(InputError, match=r"o\.npz changed since the run was planned"):
        run.other_inputs.read(slice(0, 2))
