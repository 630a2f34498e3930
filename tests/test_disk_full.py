"""A disk that fills up mid-run, on a real (small) tmpfs: one line, nothing lost, a clean resume.

The store goes on a tmpfs mounted for the test, too small for the run; after the failure the
tmpfs is grown (``mount -o remount``) and the same command is run again. Mounting needs root
(or a user namespace); where that is not allowed the tests are skipped, saying why.
"""

import os
import shutil
import subprocess
import time
from types import SimpleNamespace

import keras
import pytest

from conftest import LENGTH, random_letters, write_fasta
from test_faults import assert_same_results, score, siblings, snapshot

pytestmark = pytest.mark.cluster

SMALL, LARGE = "1500k", "64m"


def _mount(args):
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_disk(tmp_path):
    """``path``: a tmpfs of SMALL bytes at ``tmp_path / "disk"``; ``grow()`` makes it LARGE."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine: the full-disk tests need a tmpfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk tests run only as root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount(["-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): full-disk tests skipped")

    def grow():
        grown = _mount(["-o", f"remount,size={LARGE}", str(disk)])
        assert grown.returncode == 0, grown.stderr

    try:
        yield SimpleNamespace(path=disk, grow=grow)
    finally:
        _unmount(disk)


def _unmount(disk):
    """Unmount the tmpfs (waiting for worker processes that still hold files there), so that
    pytest can later remove its folder."""
    for _ in range(50):
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """# in -> C(4) -> C(64) = y: (24, 64) outputs, about 150 kB stored per sequence"""
    keras.utils.set_random_seed(11)
    inp = keras.Input((LENGTH, 4))
    hidden = keras.layers.Conv1D(4, 5, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv1D(64, 3, padding="same", name="y")(hidden))
    path = tmp_path_factory.mktemp("disk_models") / "wide.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("disk_inputs") / "in.fa",
                       random_letters(24, LENGTH, seed=12))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, wide_model, sequences, scheduler_address):
    """The store a run on a disk with room leaves."""
    return clean_run(wide_model, sequences, tmp_path_factory.mktemp("disk_clean") / "clean.zarr",
                     scheduler_address)


def clean_run(model, fasta, out, scheduler):
    code, errors, _ = score(model, fasta, out, "--chunk-size", "2", scheduler=scheduler)
    assert code == 0 and not errors
    return out


def test_disk_full_mid_run_then_resume(small_disk, wide_model, sequences, clean, scheduler_address):
    out = small_disk.path / "out.zarr"
    code, errors, _ = score(wide_model, sequences, out, "--chunk-size", "2", "--retries", "0",
                            scheduler=scheduler_address)
    assert code == 2 and len(errors) == 1, errors
    assert "No space left on device" in errors[0] and "rerun the same command" in errors[0]
    small_disk.grow()
    code, errors, stdout = score(wide_model, sequences, out, "--chunk-size", "2",
                                 scheduler=scheduler_address)
    assert code == 0 and not errors
    assert_same_results(out, clean)
    assert siblings(out) == []


def test_disk_full_while_overwriting_keeps_the_old_store(tmp_path, small_disk, wide_model,
                                                         sequences, clean, scheduler_address):
    few = write_fasta(tmp_path / "few.fa", random_letters(2, LENGTH, seed=13))
    out = clean_run(wide_model, few, small_disk.path / "out.zarr", scheduler_address)
    before = snapshot(out)
    code, errors, _ = score(wide_model, sequences, out, "--chunk-size", "2", "--retries", "0",
                            "--overwrite", scheduler=scheduler_address)
    assert code == 2 and len(errors) == 1, errors
    assert "No space left on device" in errors[0]
    assert snapshot(out) == before  # the old store is whole; the new one was written beside it
    small_disk.grow()
    code, errors, _ = score(wide_model, sequences, out, "--chunk-size", "2", "--overwrite",
                            scheduler=scheduler_address)
    assert code == 0 and not errors
    assert_same_results(out, clean)
    assert siblings(out) == []
