"""Exports of a store: TF-MoDISco inputs, bigWig tracks and variant tables, checked against
values computed by hand from the stores' own arrays and from the genome.

The stores are real runs of the engine on one single-worker local cluster: a BED of
overlapping windows on both strands (two run off a chromosome end), the VCF fixture and the
FASTA fixture (no coordinates), with a tiny 50 bp model of two outputs.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr
from oracle import one_hot

import fastism_dist
from fastism_dist.cli import main
from fastism_dist.errors import FastISMError
from fastism_dist.export import (
    COLUMNS,
    NpzArrayWriter,
    export_bigwig,
    export_modisco,
    export_variants,
)
from fastism_dist.export.stream import atomic_file

pytestmark = [pytest.mark.cluster, pytest.mark.filterwarnings("ignore::fastism_dist.io.SequenceWarning")]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GENOME = os.path.join(DATA, "genome.fa")
VCF = os.path.join(DATA, "variants.vcf")
FASTA = os.path.join(DATA, "seqs.fa")
LENGTH = 50
CHROM_LENGTHS = {"chr1": 3000, "chr2": 2400, "chr3": 1500}
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
# Not in genomic order; b overlaps c on the other strand at an odd offset (ties at chr1:135);
# e runs off the end of chr3 ('-' strand) and f off the start of chr1.
REGIONS = [("chr2", 300, 350, "a", "."), ("chr1", 121, 171, "b", "-"), ("chr1", 100, 150, "c", "+"),
           ("chr1", 160, 210, "d", "+"), ("chr3", 1480, 1500, "e", "-"), ("chr1", 0, 20, "f", "+")]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """in (50, 4) -> C(k5 same relu) -> (C(k3 same) -> profile (50, 2);  P2 -> F -> D(2) -> y)"""
    import keras

    keras.utils.set_random_seed(7)
    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    h = L.Conv1D(4, 5, padding="same", activation="relu")(inp)
    profile = L.Conv1D(2, 3, padding="same", name="profile")(h)
    y = L.Dense(2, name="y")(L.Flatten()(L.MaxPooling1D(2)(h)))
    path = str(tmp_path_factory.mktemp("export_model") / "m50.keras")
    keras.Model(inp, [profile, y]).save(path)
    return path


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cl:
        yield cl.scheduler_address


def _score(model_path, scheduler, inp, out, **options):
    fastism_dist.score(model_path, inp, out, scheduler=scheduler, method="naive", progress=False,
                       **options)
    return out


@pytest.fixture(scope="module")
def bed_store(tmp_path_factory, model_path, scheduler):
    folder = tmp_path_factory.mktemp("export_bed")
    bed = folder / "overlapping.bed"
    bed.write_text("".join(f"{c}\t{s}\t{e}\t{n}\t0\t{st}\n" for c, s, e, n, st in REGIONS))
    return _score(model_path, scheduler, str(bed), str(folder / "bed.zarr"), genome=GENOME,
                  chunk_size=2)


@pytest.fixture(scope="module")
def vcf_store(tmp_path_factory, model_path, scheduler):
    out = str(tmp_path_factory.mktemp("export_vcf") / "vcf.zarr")
    return _score(model_path, scheduler, VCF, out, genome=GENOME, chunk_size=4, reduce="profile=total")


@pytest.fixture(scope="module")
def fasta_store(tmp_path_factory, model_path, scheduler):
    return _score(model_path, scheduler, FASTA, str(tmp_path_factory.mktemp("export_fa") / "fa.zarr"),
                  chunk_size=4)


@pytest.fixture(scope="module")
def arrays(bed_store):
    """The BED store's arrays, loaded whole (the exports never do this)."""
    ds = fastism_dist.open_results(bed_store)
    return {name: ds[name].values for name in
            ["y", "y_ref", "profile", "profile_ref", "ref_base", "base", "start", "end", "strand", "chrom",
             "pad_left"]}


def genome_letters():
    seqs, name = {}, None
    with open(GENOME) as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split()[0]
                seqs[name] = []
            else:
                seqs[name].append(line.upper())
    return {k: "".join(v) for k, v in seqs.items()}


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err and err[-1].startswith("error: "), err
    return err[-1]


# ---- TF-MoDISco --------------------------------------------------------------------------------


def test_modisco_files_match_the_store_and_the_genome(tmp_path, bed_store, arrays):
    files = export_modisco(bed_store, tmp_path / "m", output="y", task=1, progress=False)
    assert sorted(os.listdir(tmp_path / "m")) == ["attr.npz", "ohe.npz"]  # no partial files left
    with np.load(files.sequences) as npz:
        assert npz.files == ["arr_0"]
        ohe = npz["arr_0"]
    attr = np.load(files.attributions)["arr_0"]
    assert ohe.shape == attr.shape == files.shape == (6, 4, LENGTH)
    assert ohe.dtype == attr.dtype == np.float32
    # one-hot of the reference letters, length last; the genome's letters (reverse complement on '-')
    letters = genome_letters()
    np.testing.assert_array_equal(ohe[2].T, one_hot([letters["chr1"][100:150]])[0])
    np.testing.assert_array_equal(ohe[1].T, one_hot([letters["chr1"][121:171][::-1].translate(COMPLEMENT)])[0])
    # padded positions (off the chromosome ends) are all-zero columns
    assert (ohe[4][:, :15] == 0).all() and (ohe[4][:, 15:].sum(0) == 1).all()
    assert (ohe[5][:, :15] == 0).all() and (ohe[5][:, 15:].sum(0) == 1).all()
    # hypothetical contributions: each base's output minus the mean over the bases
    y = arrays["y"][..., 1].astype(np.float64)
    np.testing.assert_allclose(attr, (y - y.mean(axis=2, keepdims=True)).transpose(0, 2, 1), atol=1e-6)


def test_modisco_sum_tasks_and_tasks_by_index(tmp_path, bed_store, arrays):
    files = export_modisco(bed_store, tmp_path / "sum", output="profile", sum_tasks=True, progress=False)
    profile = arrays["profile"].astype(np.float64).sum(axis=(3, 4))
    want = (profile - profile.mean(axis=2, keepdims=True)).transpose(0, 2, 1)
    np.testing.assert_allclose(np.load(files.attributions)["arr_0"], want, rtol=1e-5, atol=1e-4)
    files = export_modisco(bed_store, tmp_path / "last", output="y", task=-1, progress=False)
    y = arrays["y"][..., 1].astype(np.float64)
    np.testing.assert_allclose(np.load(files.attributions)["arr_0"],
                               (y - y.mean(axis=2, keepdims=True)).transpose(0, 2, 1), atol=1e-6)


def test_modisco_needs_one_value_per_mutation_and_a_complete_store(tmp_path, bed_store):
    with pytest.raises(FastISMError, match=r"several values per mutation \(y_dim_0=2\).*--task.*--sum-tasks"):
        export_modisco(bed_store, tmp_path / "m", output="y", progress=False)
    with pytest.raises(FastISMError, match=r"profile_dim_1=2"):  # a position of the profile: 2 tracks left
        export_modisco(bed_store, tmp_path / "m", output="profile", task=3, progress=False)
    with pytest.raises(FastISMError, match="not both"):
        export_modisco(bed_store, tmp_path / "m", output="y", task=0, sum_tasks=True, progress=False)
    with pytest.raises(FastISMError, match="several outputs"):
        export_modisco(bed_store, tmp_path / "m", task=0, progress=False)
    with pytest.raises(FastISMError, match="does not exist"):
        export_modisco(tmp_path / "nothing.zarr", tmp_path / "m", progress=False)
    partial = shutil.copytree(bed_store, tmp_path / "partial.zarr")
    zarr.open_group(str(partial), mode="r+")["done"][1] = 0
    with pytest.raises(FastISMError, match=r"not complete \(2 of 3 chunks done\)"):
        export_modisco(partial, tmp_path / "m", output="y", task=0, progress=False)
    assert not os.path.exists(tmp_path / "m") or os.listdir(tmp_path / "m") == []


def test_modisco_lite_reads_the_export(tmp_path, bed_store):
    pytest.importorskip("modiscolite", reason="modisco-lite is not installed (pip install modisco-lite)")
    files = export_modisco(bed_store, tmp_path, output="y", task=0, progress=False)
    modisco = os.path.join(os.path.dirname(sys.executable), "modisco")
    result = tmp_path / "modisco.h5"
    # a 40 bp window of 50 bp sequences: modisco-lite cuts it along the last axis, so it reads (N, 4, L)
    run = subprocess.run([modisco, "motifs", "-s", files.sequences, "-a", files.attributions,
                          "-n", "100", "-w", "40", "-z", "6", "-t", "10", "-f", "2", "-g", "2",
                          "-l", "1", "-o", str(result)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    import h5py

    with h5py.File(result, "r") as h5:
        assert int(h5.attrs["window_size"]) == 40


def test_modisco_command(tmp_path, bed_store, capsys):
    out = tmp_path / "cli"
    assert main(["export", "modisco", bed_store, "--output", "y", "--task", "0", "--out", str(out),
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert np.load(out / "attr.npz")["arr_0"].shape == (6, 4, LENGTH)
    assert main(["export", "modisco", bed_store, "--output", "y", "--out", str(out)]) == 2
    assert "--sum-tasks" in _error_line(capsys)
    assert main(["export", "modisco", bed_store, "--output", "y", "--sum-tasks", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "6 sequences x 4 bases x 50 positions" in captured.out
    assert "chunk" in captured.err  # the progress bar, one step per chunk


# ---- bigWig ------------------------------------------------------------------------------------


def hand_track(arrays, values):
    """{(chrom, coord): value} from per-(seq, pos) values, by the nearest-centre rule worked out
    here from the windows themselves: (distance from the centre, store order) smallest wins."""
    best = {}
    for i in range(values.shape[0]):
        chrom, start, end = str(arrays["chrom"][i]), int(arrays["start"][i]), int(arrays["end"][i])
        for p in range(LENGTH):
            base = p - int(arrays["pad_left"][i])  # genome bases of the (clipped) window
            if not 0 <= base < end - start:
                continue
            coord = end - 1 - base if arrays["strand"][i] == "-" else start + base
            if not 0 <= coord < CHROM_LENGTHS[chrom] or np.isnan(values[i, p]):
                continue
            key, rank = (chrom, coord), (abs(p - (LENGTH - 1) / 2), i)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, float(values[i, p]))
    return {key: value for key, (_, value) in best.items()}


def read_track(path):
    import pyBigWig

    with pyBigWig.open(str(path)) as bw:
        assert bw.isBigWig()
        chroms = bw.chroms()
        entries = {(c, s): v for c in chroms for s, e, v in (bw.intervals(c) or []) if e == s + 1}
        n_intervals = sum(len(bw.intervals(c) or []) for c in chroms)
    assert n_intervals == len(entries)  # one base per entry
    return chroms, entries


def test_bigwig_l2_track_by_the_nearest_window_centre(tmp_path, bed_store, arrays):
    track = export_bigwig(bed_store, tmp_path / "y.bw", output="y", progress=False)
    delta = arrays["y"].astype(np.float64) - arrays["y_ref"][:, None, None, :]
    l2 = np.sqrt((delta ** 2).sum(axis=(2, 3)))
    want = hand_track(arrays, l2)
    chroms, got = read_track(track.path)
    assert set(got) == set(want) and track.n_positions == len(want)
    np.testing.assert_allclose([got[k] for k in sorted(want)], [want[k] for k in sorted(want)], rtol=1e-5)
    # without --genome: the chromosome sizes the BED run recorded from its genome
    assert chroms == track.chrom_sizes == CHROM_LENGTHS and "chrom_sizes" in track.sizes_from
    # only the '-' window b covers chr1:150-159: its position 170 - coord
    assert got[("chr1", 155)] == pytest.approx(l2[1, 15], rel=1e-5)
    # a tie at chr1:135 (position 35 of both c and b): the window earlier in the store (b) wins
    assert got[("chr1", 135)] == pytest.approx(l2[1, 35], rel=1e-5)
    assert l2[1, 35] != pytest.approx(l2[2, 35], rel=1e-3)
    # chr3 (the '-' window e) ends at 1500: nothing beyond it; chr1 starts at 0
    assert max(c for k, c in got if k == "chr3") == 1499 and min(c for k, c in got if k == "chr1") == 0


def test_bigwig_reference_base_score_with_genome_sizes(tmp_path, bed_store, arrays):
    track = export_bigwig(bed_store, tmp_path / "ref.bw", output="y", task=0, score="ref",
                          genome=GENOME, progress=False)
    y = arrays["y"][..., 0].astype(np.float64)
    centred = y - y.mean(axis=2, keepdims=True)
    is_ref = arrays["ref_base"][..., None] == arrays["base"]
    ref_value = np.where(is_ref.any(-1), (centred * is_ref).sum(-1), np.nan)
    want = hand_track(arrays, ref_value)
    chroms, got = read_track(track.path)
    assert chroms == CHROM_LENGTHS and track.sizes_from == f"genome index {GENOME}.fai"
    assert set(got) == set(want)
    np.testing.assert_allclose([got[k] for k in sorted(want)], [want[k] for k in sorted(want)],
                               rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr v3 on consolidating
def test_bigwig_header_from_the_store_and_wrong_sizes(tmp_path, bed_store):
    copy = shutil.copytree(bed_store, tmp_path / "sized.zarr")
    group = zarr.open_group(str(copy), mode="r+")
    group.attrs["chrom_sizes"] = {"chr3": 1500, "chr1": 3000, "chrX": 10, "chr2": 2400}
    zarr.consolidate_metadata(str(copy))
    track = export_bigwig(copy, tmp_path / "s.bw", output="y", progress=False)
    assert list(track.chrom_sizes.items()) == [("chr3", 1500), ("chr1", 3000), ("chr2", 2400)]
    assert read_track(track.path)[0] == track.chrom_sizes and "chrom_sizes" in track.sizes_from
    group.attrs["chrom_sizes"] = {"chr1": 200, "chr2": 2400, "chr3": 1500}
    zarr.consolidate_metadata(str(copy))
    with pytest.raises(FastISMError, match=r"position 209 on 'chr1' lies past its length 200"):
        export_bigwig(copy, tmp_path / "bad.bw", output="y", progress=False)
    fai = tmp_path / "small.fa.fai"
    fai.write_text("chr1\t3000\t6\t60\t61\n")
    with pytest.raises(FastISMError, match=r"chromosome 'chr2' of the store is not in genome index"):
        export_bigwig(bed_store, tmp_path / "bad.bw", output="y", genome=str(fai), progress=False)
    assert not os.path.exists(tmp_path / "bad.bw")
    # a store without sizes: the largest coordinate scored on each chromosome, and it says so
    del group.attrs["chrom_sizes"]
    zarr.consolidate_metadata(str(copy))
    track = export_bigwig(copy, tmp_path / "largest.bw", output="y", progress=False)
    assert track.chrom_sizes == {"chr1": 210, "chr2": 350, "chr3": 1500}
    assert "largest coordinate" in track.sizes_from


def test_bigwig_errors(tmp_path, bed_store, fasta_store, capsys):
    with pytest.raises(FastISMError, match="no genomic coordinates"):
        export_bigwig(fasta_store, tmp_path / "x.bw", output="y", progress=False)
    with pytest.raises(FastISMError, match="several values per mutation"):
        export_bigwig(bed_store, tmp_path / "x.bw", output="y", score="ref", progress=False)
    with pytest.raises(FastISMError, match="score must be one of"):
        export_bigwig(bed_store, tmp_path / "x.bw", output="y", score="max", progress=False)
    assert main(["export", "bigwig", fasta_store, "--output", "y", "--out", str(tmp_path / "x.bw")]) == 2
    assert "no genomic coordinates" in _error_line(capsys)
    assert not os.path.exists(tmp_path / "x.bw")


def test_bigwig_command(tmp_path, bed_store, capsys):
    out = tmp_path / "cli.bw"
    assert main(["export", "bigwig", bed_store, "--output", "profile", "--task", "10", "--score", "l2",
                 "--genome", GENOME, "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}:") and "3 chromosomes" in line and "genome.fa.fai" in line
    assert read_track(out)[0] == CHROM_LENGTHS


# ---- variant tables ----------------------------------------------------------------------------


VCF_POS = [150, 600, 600, 900, 10, 1499]


def test_variant_table(tmp_path, vcf_store):
    ds = fastism_dist.open_results(vcf_store)
    n_rows = export_variants(vcf_store, tmp_path / "v.tsv", progress=False)
    table = pd.read_csv(tmp_path / "v.tsv", sep="\t", keep_default_na=False, na_values=["NaN"],
                        dtype={"task": str, "variant_id": str})
    assert tuple(table.columns) == COLUMNS and n_rows == len(table) == 6 * (2 + 2)
    assert table["output"].tolist()[:4] == ["profile", "profile", "y", "y"]
    assert table["task"].tolist()[:4] == ["0", "1", "0", "1"]
    first = table.groupby("seq", sort=False).first()
    assert first.index.tolist() == ds["seq"].values.tolist()
    assert first["variant_pos"].tolist() == VCF_POS  # 1-based, as in the VCF
    assert first["variant_id"].tolist() == ["rs1", "rs2", "rs2", "del1", ".", "."]
    assert first["chrom"].tolist() == ["chr1", "chr1", "chr1", "chr2", "chr3", "chr3"]
    assert first["ref_allele"].tolist() == ["C", "A", "A", "CCA", "T", "A"]
    assert first["alt_allele"].tolist() == ["G", "C", "G", "C", "C", "G"]
    y = table[table["output"] == "y"]
    ref = y["ref_output"].to_numpy().reshape(6, 2)
    alt = y["alt_output"].to_numpy().reshape(6, 2)
    np.testing.assert_allclose(ref, ds["y_ref"].values, rtol=1e-6)
    np.testing.assert_allclose(alt, ds["y_alt"].values, rtol=1e-6)
    np.testing.assert_allclose(y["alt_minus_ref"].to_numpy().reshape(6, 2), alt - ref, atol=1e-6)
    # the deletion: its reference output is known, the ALT one is not
    assert np.isfinite(ref[3]).all() and np.isnan(alt[3]).all()
    assert table[table["seq"] == "chr2:900:CCA>C"]["alt_minus_ref"].isna().all()
    # for an SNV, alt - ref is the ISM entry at the variant's position and ALT base
    for i in [0, 1, 2, 4, 5]:
        mutant = ds["y"].values[i, LENGTH // 2, "ACGT".index(first["alt_allele"].iloc[i])]
        np.testing.assert_allclose(y["alt_minus_ref"].to_numpy().reshape(6, 2)[i],
                                   mutant - ds["y_ref"].values[i], atol=1e-5)


def test_variant_table_command_and_errors(tmp_path, vcf_store, bed_store, capsys):
    out = tmp_path / "y.tsv"
    assert main(["export", "variants", vcf_store, "--output", "y", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 12 rows"
    assert set(pd.read_csv(out, sep="\t")["output"]) == {"y"}
    with pytest.raises(FastISMError, match="not scored from a VCF"):
        export_variants(bed_store, tmp_path / "b.tsv", progress=False)
    with pytest.raises(FastISMError, match=r"must end in \.tsv or \.parquet"):
        export_variants(vcf_store, tmp_path / "v.csv", progress=False)
    with pytest.raises(FastISMError, match="no output named 'z'"):
        export_variants(vcf_store, tmp_path / "v.tsv", output="z", progress=False)
    assert not os.path.exists(tmp_path / "b.tsv") and not os.path.exists(tmp_path / "v.tsv")


def _has_pyarrow():
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_pyarrow(), reason="pyarrow is installed: the Parquet file is written")
def test_parquet_without_pyarrow_is_a_one_line_error(tmp_path, vcf_store, capsys):
    assert main(["export", "variants", vcf_store, "--out", str(tmp_path / "v.parquet")]) == 2
    line = _error_line(capsys)
    assert "pip install pyarrow" in line and ".tsv" in line
    assert not os.path.exists(tmp_path / "v.parquet")


@pytest.mark.skipif(not _has_pyarrow(), reason="pyarrow is not installed (pip install pyarrow)")
def test_parquet_table_equals_the_tsv_one(tmp_path, vcf_store):
    export_variants(vcf_store, tmp_path / "v.parquet", progress=False)
    export_variants(vcf_store, tmp_path / "v.tsv", progress=False)
    parquet = pd.read_parquet(tmp_path / "v.parquet")
    tsv = pd.read_csv(tmp_path / "v.tsv", sep="\t", keep_default_na=False, na_values=["NaN"],
                      dtype={"task": str, "variant_id": str})
    assert tuple(parquet.columns) == COLUMNS and len(parquet) == len(tsv) == 24
    for column in ["seq", "variant_id", "chrom", "variant_pos", "output", "task"]:
        assert parquet[column].tolist() == tsv[column].tolist()
    np.testing.assert_allclose(parquet["alt_minus_ref"], tsv["alt_minus_ref"], rtol=1e-6)


# ---- what every export shares ------------------------------------------------------------------


def test_npz_writer_streams_and_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.npz"
    with atomic_file(target) as partial:
        writer = NpzArrayWriter(partial, (5, 2, 3))
        blocks = np.arange(30, dtype=np.float32).reshape(5, 2, 3)
        writer.write(blocks[:2])
        writer.write(blocks[2:])
        writer.close()
    np.testing.assert_array_equal(np.load(target)["arr_0"], blocks)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="stopped"):
        with atomic_file(target) as partial:
            writer = NpzArrayWriter(partial, (5, 2, 3))
            writer.write(blocks[:2])
            raise RuntimeError("stopped")
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["a.npz"]
    writer = NpzArrayWriter(tmp_path / "short.npz", (5, 2, 3))
    writer.write(blocks[:4])
    with pytest.raises(ValueError, match="4 of 5 rows"):
        writer.close()
    with pytest.raises(ValueError, match="does not fit"):
        NpzArrayWriter(tmp_path / "wide.npz", (5, 2, 3)).write(np.zeros((1, 3, 3)))


def test_progress_bar_only_when_asked(tmp_path, vcf_store, capsys):
    export_variants(vcf_store, tmp_path / "quiet.tsv", progress=False)
    assert capsys.readouterr().err == ""
    export_variants(vcf_store, tmp_path / "bar.tsv", progress=True)
    err = capsys.readouterr().err
    assert "variants" in err and "2/2" in err  # two chunks of 4 sequences


def test_parser_loads_no_exporter():
    code = ("from fastism_dist.cli import build_parser; build_parser(); import sys; "
            "assert not {'xarray', 'fastism_dist.export.modisco', 'fastism_dist.export.bigwig'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
