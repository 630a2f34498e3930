"""The worker side in this process: the plugin made from the run description, and ChunkSink.

No cluster: the plugin's ``setup`` and ``run_chunk`` run here exactly as on a worker, against a
real store on disk.
"""

import pickle

import numpy as np
import pytest

from conftest import LENGTH, random_letters, write_fasta
from fastism_dist import FastISM, NaiveISM, open_results
from fastism_dist.distributed import (ChunkSink, ISMWorkerPlugin, count_mutations, plan_run,
                                      write_template)
from fastism_dist.io import open_sequences
from fastism_dist.outputs import plan_outputs
from fastism_dist.store import create_template, done_mask, open_writer

BPNET_LENGTH = 48


@pytest.fixture(scope="module")
def bpnet_path(tmp_path_factory):
    """Tiny BPNet: profile (48, 4) and counts (2,)."""
    from fastism_dist.models import bpnet

    path = str(tmp_path_factory.mktemp("bpnet") / "bpnet.keras")
    bpnet(seq_len=BPNET_LENGTH, filters=4, n_dilated=2, seed=0).save(path)
    return path


def test_plugin_is_built_from_the_run_description(tmp_path, tiny_model_path):
    fasta = write_fasta(tmp_path / "in.fa", random_letters(10, LENGTH, seed=3))
    out = str(tmp_path / "out.zarr")
    run = plan_run(tiny_model_path, fasta, out, chunk_size=4, method="naive", start=2, end=20)
    plugin = ISMWorkerPlugin(run)
    assert plugin.run is run and plugin.name == f"fastism-model-{run.run_id}"
    # what travels to a worker: the description whole, nothing loaded
    sent = pickle.loads(pickle.dumps(plugin))
    assert sent.name == plugin.name and sent.executor is None and sent.writer is None
    assert sent.run.params() == run.params() and sent.run.run_id == run.run_id
    assert sent.run.output_plan == run.output_plan and sent.run.spec.start == 2
    write_template(run)
    sent.setup()
    assert isinstance(sent.executor, NaiveISM) and sent.executor.spec.end == 20
    result = sent.run_chunk(1, slice(4, 8))
    x = open_sequences(fasta).read(slice(None))
    assert result["chunk"] == 1 and result["sequences"] == 4
    assert result["mutations"] == count_mutations(x[4:8, 2:20], np.eye(4, dtype=np.float32))
    assert done_mask(out).tolist() == [False, True, False]
    want = NaiveISM(tiny_model_path, start=2, end=20)(x[4:8])
    ds = open_results(out)
    np.testing.assert_allclose(ds["y"].values[4:8], want.mut[0], atol=1e-6)
    np.testing.assert_allclose(ds["y_ref"].values[4:8], want.ref[0], atol=1e-6)
    assert np.isnan(ds["y"].values[:4]).all() and np.isnan(ds["y"].values[8:]).all()
    sent.teardown()
    assert sent.executor is None


@pytest.mark.parametrize("tasks,reduce,dtype", [
    (None, "profile=jsd", "float32"),
    (None, "profile=total", "float32"),
    ("1,0", "profile=bins:16", "float32"),
    ("1", None, "float32"),
    (None, "profile=logsum", "float16"),
])
def test_chunk_sink_stores_what_the_whole_chunk_path_stored(tmp_path, bpnet_path, tasks, reduce,
                                                            dtype):
    """Reducing each batch as it arrives stores exactly ``OutputPlan.apply`` of the full
    ISMResult, while holding only arrays of the stored size."""
    x = open_sequences(write_fasta(tmp_path / "in.fa", random_letters(3, BPNET_LENGTH, seed=4)),
                       length=BPNET_LENGTH).read(slice(None))
    ism = FastISM(bpnet_path, batch_size=40, xla=False)  # several batches; one compiled path
    full = ism(x)
    shapes = {n: r.shape[1:] for n, r in zip(ism.output_names, full.ref)}
    plan = plan_outputs(shapes, tasks=tasks, reduce=reduce)
    out = str(tmp_path / "out.zarr")
    create_template(out, ids=["a", "b", "c"], positions=np.arange(BPNET_LENGTH), bases=list("ACGT"),
                    outputs=plan.shapes, params={}, model_sha256="-", chunk_size=3, dtype=dtype,
                    dims=plan.dims)
    sink = ChunkSink(plan, ism.output_names, open_writer(out), 0, dtype=dtype)
    written = ism(x, sink=sink)
    assert done_mask(out).tolist() == [False]  # the executor call computes; write() stores
    assert sink.write() == sink.write_s > 0
    assert written["sequences"] == 3
    assert written["mutations"] == count_mutations(x, np.eye(4, dtype=np.float32))
    ds = open_results(out)
    for k, name in enumerate(ism.output_names):
        want = plan.apply(name, full.ref[k], full.mut[k])
        assert sink.mut[name].shape == (3, BPNET_LENGTH, 4) + plan.shapes[name]
        assert sink.mut[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ds[name].values, want.mut.astype(dtype))
        np.testing.assert_array_equal(ds[f"{name}_ref"].values, want.ref.astype(dtype))
    assert done_mask(out).tolist() == [True]
