"""End to end: ``fastism-dist score`` from FASTA, BED + genome and VCF + genome into stores with
genomic coordinates, VCF ALT outputs, and one-line errors for bad inputs.

The inputs are the fixtures in ``tests/data/`` (see ``make_fixtures.py``): 50 bp FASTA records,
a 3-chromosome genome, 6 BED intervals on both strands (two windows run off a chromosome end)
and a VCF of SNVs, a deletion, a symbolic ALT and duplicates. The model is tiny and takes 50 bp;
every run goes through ``fastism_dist.cli.main`` to one shared 1-worker cluster (``--scheduler``).
"""

import os

import numpy as np
import pytest

from fastism_dist import NaiveISM, open_results
from fastism_dist.cli import main
from fastism_dist.distributed import apply_variants
from fastism_dist.io import SequenceWarning, decode, one_hot, open_sequences
from fastism_dist.outputs import total_count

pytestmark = [pytest.mark.cluster,
              # the fixtures have padded windows, duplicates and a symbolic ALT: expected warnings
              pytest.mark.filterwarnings("ignore::fastism_dist.io.SequenceWarning")]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FASTA = os.path.join(DATA, "seqs.fa")
GENOME = os.path.join(DATA, "genome.fa")
BED = os.path.join(DATA, "regions.bed")
VCF = os.path.join(DATA, "variants.vcf")
LENGTH = 50
TOL = 1e-5
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """in (50, 4) -> C(k5 same relu) -> (C(k3 same) -> profile (50, 2);  P2 -> F -> D(2) -> y)"""
    import keras

    keras.utils.set_random_seed(4)
    L = keras.layers
    inp = keras.Input((LENGTH, 4))
    h = L.Conv1D(4, 5, padding="same", activation="relu")(inp)
    profile = L.Conv1D(2, 3, padding="same", name="profile")(h)
    y = L.Dense(2, name="y")(L.Flatten()(L.MaxPooling1D(2)(h)))
    path = str(tmp_path_factory.mktemp("e2e_model") / "m50.keras")
    keras.Model(inp, [profile, y]).save(path)
    return path


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cl:
        yield cl.scheduler_address


def run_cli(model_path, scheduler, inp, out, *flags):
    return main(["score", model_path, inp, "--out", out, "--scheduler", scheduler, "--quiet",
                 "--method", "naive", *flags])


def model_outputs(model_path, x):
    """An explicit model call: (profile, y) as float32 arrays."""
    import keras

    model = keras.models.load_model(model_path, compile=False)
    return [np.asarray(o, dtype=np.float32) for o in model(x, training=False)]


def assert_ism_equals(ds, model_path, x):
    res = NaiveISM(model_path)(x)
    np.testing.assert_allclose(ds["profile"].values, res.mut[0], atol=TOL)
    np.testing.assert_allclose(ds["y"].values, res.mut[1], atol=TOL)
    np.testing.assert_allclose(ds["y_ref"].values, res.ref[1], atol=TOL)
    return res


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


def assert_coordinates_match_genome(ds):
    """ref_base at every (seq, pos) is the genome letter at its genomic coordinate (complemented
    on '-'), and positions padded off a chromosome end have coordinate -1 and letter N."""
    genome = genome_letters()
    gc = ds.ism.genomic_coordinate().values
    ref_base = ds["ref_base"].values
    for i, (chrom, strand) in enumerate(zip(ds["chrom"].values, ds["strand"].values)):
        for p in range(ds.sizes["pos"]):
            if gc[i, p] < 0:
                assert ref_base[i, p] == "N"
                continue
            letter = genome[chrom][gc[i, p]]
            assert ref_base[i, p] == (letter.translate(COMPLEMENT) if strand == "-" else letter)
    return gc


@pytest.fixture(scope="module")
def fasta_store(tmp_path_factory, model_path, scheduler):
    out = str(tmp_path_factory.mktemp("e2e_fasta") / "fasta.zarr")
    assert run_cli(model_path, scheduler, FASTA, out, "--chunk-size", "4") == 0
    return out


def test_fasta(fasta_store, model_path):
    ds = open_results(fasta_store)
    assert list(ds["seq"].values) == [f"seq{i}" for i in range(8)]
    assert "chrom" not in ds.coords and "y_alt" not in ds.data_vars
    # N and R are all-zero rows: ref_base N, and all four bases are real substitutions there
    assert "".join(ds["ref_base"].values[3, [10, 11, 30]]) == "NNN"
    assert "".join(ds["ref_base"].values[2, :5]) == "GTAAA"  # lower case read as upper
    x = open_sequences(FASTA).read(slice(None))
    assert np.all(x[3, [10, 11, 30]] == 0)
    assert_ism_equals(ds, model_path, x)
    assert (ds.ism.genomic_coordinate().values == -1).all()


def test_bed_with_genome(tmp_path, model_path, scheduler):
    out = str(tmp_path / "bed.zarr")
    assert run_cli(model_path, scheduler, BED, out, "--genome", GENOME, "--chunk-size", "2") == 0
    ds = open_results(out)
    assert list(ds["seq"].values) == ["chr1:125-175(+)", "chr1:425-475(-)", "chr2:1025-1075(.)",
                                      "chr1:10-60(+)", "chr3:1465-1500(-)", "chr2:275-325(.)"]
    assert list(ds["chrom"].values) == ["chr1", "chr1", "chr2", "chr1", "chr3", "chr2"]
    assert list(ds["start"].values) == [125, 425, 1025, 10, 1465, 275]
    assert list(ds["end"].values) == [175, 475, 1075, 60, 1500, 325]  # clipped to chr3's end
    assert list(ds["strand"].values) == ["+", "-", ".", "+", "-", "."]
    gc = assert_coordinates_match_genome(ds)
    np.testing.assert_array_equal(gc[0], 125 + np.arange(LENGTH))
    np.testing.assert_array_equal(gc[1], 474 - np.arange(LENGTH))       # '-': reverse complement
    assert list(ds["pad_left"].values) == [0, 0, 0, 0, 15, 0]         # chr3 ends at 1500
    np.testing.assert_array_equal(gc[4, :15], -1)
    np.testing.assert_array_equal(gc[4, 15:], 1499 - np.arange(LENGTH - 15))
    x = open_sequences(BED, genome=GENOME, length=LENGTH).read(slice(None))
    assert_ism_equals(ds, model_path, x)


def test_vcf_with_genome_alt_outputs(tmp_path, model_path, scheduler):
    out = str(tmp_path / "vcf.zarr")
    with pytest.warns(SequenceWarning, match="1 of 6 variant.* indels"):
        rc = run_cli(model_path, scheduler, VCF, out, "--genome", GENOME, "--chunk-size", "4",
                     "--reduce", "profile=total")
    assert rc == 0
    ds = open_results(out)
    ids = ["chr1:150:C>G", "chr1:600:A>C", "chr1:600:A>G", "chr2:900:CCA>C", "chr3:10:T>C",
           "chr3:1499:A>G"]
    assert list(ds["seq"].values) == ids
    assert list(ds["ref_allele"].values) == ["C", "A", "A", "CCA", "T", "A"]
    assert list(ds["alt_allele"].values) == ["G", "C", "G", "C", "C", "G"]
    assert list(ds["variant_pos"].values) == [LENGTH // 2] * 6
    assert ds["y_alt"].dims == ("seq", "y_dim_0")
    assert ds["profile_alt"].dims == ("seq", "profile_dim_1")
    assert "indel" in ds.attrs["alt_note"] and ds.attrs["alt"] is True
    # the variant's genomic coordinate and reference letter
    gc = assert_coordinates_match_genome(ds)
    vcf_pos = [150, 600, 600, 900, 10, 1499]
    assert gc[:, LENGTH // 2].tolist() == [p - 1 for p in vcf_pos]
    assert [ds["ref_base"].values[i, LENGTH // 2] for i in range(6)] == ["C", "A", "A", "C", "T", "A"]
    # ALT outputs: an explicit model call on each window with ALT written in (SNVs here)
    x = open_sequences(VCF, genome=GENOME, length=LENGTH).read(slice(None))
    snv = [0, 1, 2, 4, 5]
    x_alt = x[snv].copy()
    for j, i in enumerate(snv):
        x_alt[j, LENGTH // 2] = one_hot(ds["alt_allele"].values[i])[0]
    profile, y = model_outputs(model_path, x_alt)
    np.testing.assert_allclose(ds["y_alt"].values[snv], y, atol=TOL)
    np.testing.assert_allclose(ds["profile_alt"].values[snv], total_count(profile), atol=1e-4)
    assert np.isnan(ds["y_alt"].values[3]).all() and np.isnan(ds["profile_alt"].values[3]).all()
    # ... and, for an SNV, the ISM entry at (variant_pos, ALT base)
    for i in snv:
        mut = ds["y"].sel(seq=ids[i], base=ds["alt_allele"].values[i]).values[LENGTH // 2]
        np.testing.assert_allclose(ds["y_alt"].values[i], mut, atol=TOL)
    effect = ds.ism.variant_effect("y").values
    np.testing.assert_allclose(effect[snv], y - ds["y_ref"].values[snv], atol=TOL)
    # the reduced profile: total counts per track, as from the in-process ISM
    res = assert_ism_equals_reduced(ds, model_path, x)
    np.testing.assert_allclose(ds["y"].values, res.mut[1], atol=TOL)


def assert_ism_equals_reduced(ds, model_path, x):
    res = NaiveISM(model_path)(x)
    np.testing.assert_allclose(ds["profile"].values, total_count(res.mut[0]), atol=1e-4)
    np.testing.assert_allclose(ds["profile_ref"].values, total_count(res.ref[0]), atol=1e-4)
    return res


# ---- bad inputs: one line, exit code 2, the existing store untouched ------------------------------


def _snapshot(path):
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                files[os.path.relpath(full, path)] = fh.read()
    return files


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def _write_vcf(path, rows):
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=3000>",
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with open(path, "w") as fh:
        fh.write("\n".join(header + ["\t".join(map(str, r)) + "\t.\tPASS\t." for r in rows]) + "\n")
    return str(path)


def test_bad_inputs_are_one_line_errors_and_leave_the_store(tmp_path, fasta_store, model_path,
                                                             scheduler, capsys):
    before = _snapshot(fasta_store)
    capsys.readouterr()

    def fails(inp, *flags):
        # --overwrite: even then a bad input must not touch the existing store
        rc = run_cli(model_path, scheduler, inp, fasta_store, "--overwrite", *flags)
        assert rc == 2
        return _error_line(capsys)

    bad_char = tmp_path / "bad.fa"
    bad_char.write_text(">ok\n" + "A" * LENGTH + "\n>broken record\n" + "ACGTAC" + "X" + "A" * 43 + "\n")
    line = fails(str(bad_char))
    assert str(bad_char) in line and "'broken'" in line and "position 7" in line and "'X'" in line

    short = tmp_path / "short.fa"
    short.write_text(">ok\n" + "A" * LENGTH + "\n>short\n" + "C" * 40 + "\n")
    line = fails(str(short))
    assert "'short'" in line and "length 40" in line and "resize" in line

    genome = genome_letters()
    good_ref, wrong_ref = genome["chr1"][149], "ACGT"["ACGT".index(genome["chr1"][199]) - 1]
    vcf = _write_vcf(tmp_path / "mismatch.vcf",
                     [("chr1", 150, "ok1", good_ref, "ACGT"["ACGT".index(good_ref) - 2]),
                      ("chr1", 200, "bad1", wrong_ref, "ACGT"["ACGT".index(wrong_ref) - 1])])
    line = fails(vcf, "--genome", GENOME)
    assert f"chr1:200:{wrong_ref}>" in line and "line 5" in line and "does not match" in line
    assert "skip_mismatches" in line or "skip-mismatches" in line

    line = fails(VCF)  # no --genome
    assert "genome" in line
    assert _snapshot(fasta_store) == before

    # --skip-mismatches skips the record and reports it (warning and the store's attrs)
    out = str(tmp_path / "skipped.zarr")
    with pytest.warns(SequenceWarning, match="REF does not match"):
        assert run_cli(model_path, scheduler, vcf, out, "--genome", GENOME, "--skip-mismatches") == 0
    ds = open_results(out)
    assert list(ds["seq"].values) == [f"chr1:150:{good_ref}>{'ACGT'['ACGT'.index(good_ref) - 2]}"]
    assert ds.attrs["n_skipped_records"] == 1
    skipped = ds.attrs["skipped_records"][0]
    assert skipped["record"].startswith("chr1:200:") and "does not match" in skipped["reason"]

    # --resize centre-pads the short record with N rows
    out = str(tmp_path / "resized.zarr")
    assert run_cli(model_path, scheduler, str(short), out, "--resize") == 0
    ds = open_results(out)
    assert "".join(ds["ref_base"].values[1]) == "N" * 5 + "C" * 40 + "N" * 5
    assert list(ds["pad_left"].values) == [0, 5] and list(ds["pad_right"].values) == [0, 5]
    assert_ism_equals(ds, model_path, open_sequences(str(short), length=LENGTH, resize=True).read(slice(None)))


def test_apply_variants_snv_mnv_indel():
    """ALT written over REF for SNVs and same-length MNVs; indels and alleles past the window end
    are left out (their ALT output is NaN)."""
    x = np.stack([one_hot("ACGTACGTAC")] * 4)
    variants = {"variant_pos": np.array([5, 5, 5, 8]), "ref": np.array(["C", "CG", "CGT", "AC"], dtype=object),
                "alt": np.array(["T", "AA", "C", "GG"], dtype=object)}
    x_alt, ok = apply_variants(x[1:], variants, slice(1, 4), "ACGT")
    assert ok.tolist() == [True, False, True]
    assert decode(x_alt[0]) == "ACGTAAATAC" and decode(x_alt[1]) == "ACGTACGTAC"
    assert decode(x_alt[2]) == "ACGTACGTGG"
    x_alt, ok = apply_variants(x[:1], {k: v[:1] for k, v in variants.items()}, slice(0, 1), "ACGT")
    assert ok.tolist() == [True] and decode(x_alt[0]) == "ACGTATGTAC"
    past_end = {"variant_pos": np.array([9]), "ref": np.array(["CA"], dtype=object),
                "alt": np.array(["GG"], dtype=object)}
    assert apply_variants(x[:1], past_end, slice(0, 1), "ACGT")[1].tolist() == [False]
    np.testing.assert_array_equal(x[0], one_hot("ACGTACGTAC"))  # the input is not changed
