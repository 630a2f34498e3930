"""The input stage: FASTA (plain, bgzip, gzip), BED + genome, VCF + genome, .npy.

Fixtures in tests/data are written by tests/data/make_fixtures.py; each test copies them into
its own tmp_path so that indexes (.fai, .gzi) and edits never touch the repository. Every test
gets its own cache folder ($FASTISM_DIST_CACHE_DIR).
"""

import gzip
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastism_dist.errors import InputError
from fastism_dist.io import (
    ALPHABET,
    SequenceSource,
    SequenceWarning,
    decode,
    genomic_position,
    one_hot,
    open_sequences,
    readers,
    reverse_complement,
)
from fastism_dist.io.bed import BedSource
from fastism_dist.io.fasta import FastaSource
from fastism_dist.io.npy import NpySource
from fastism_dist.io.vcf import VcfSource
from oracle import one_hot as oracle_one_hot
from oracle import random_one_hot

DATA = os.path.join(os.path.dirname(__file__), "data")
L = 100


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FASTISM_DIST_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def data(tmp_path):
    for name in os.listdir(DATA):
        if not name.endswith(".py"):
            shutil.copy(os.path.join(DATA, name), tmp_path / name)
    return tmp_path


def parse_fasta(path):
    """Expected records, by a deliberately simple reader."""
    opener = gzip.open if str(path).endswith(".gz") else open
    records, name = {}, None
    with opener(path, "rt") as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split()[0]
                records[name] = ""
            elif line:
                records[name] += line
    return records


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def quiet_open(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SequenceWarning)
        return open_sequences(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# letters


def test_one_hot_letters_case_and_zero_rows():
    x = one_hot("ACGTacgtNnRYKMSWBDHV")
    assert x.shape == (20, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:4], np.eye(4))
    np.testing.assert_array_equal(x[4:8], np.eye(4))
    assert not x[8:].any()
    assert decode(x) == "ACGTACGT" + "N" * 12
    assert decode(np.stack([x, x])) == [decode(x)] * 2


@pytest.mark.parametrize("seq, pos, ch", [("ACGTX", 5, "X"), ("AC-GT", 3, "-"), ("ACU", 3, "U"), ("Aé", 2, "é")])
def test_one_hot_bad_character_names_position(seq, pos, ch):
    with pytest.raises(InputError, match=rf"position {pos}: invalid character '{ch}'"):
        one_hot(seq)


def test_other_alphabets():
    x = one_hot("ACGU", alphabet="ACGU")
    np.testing.assert_array_equal(x, np.eye(4))
    np.testing.assert_array_equal(reverse_complement(x, "ACGU"), one_hot("ACGU", "ACGU"))
    # a letter in the alphabet wins over its IUPAC meaning
    assert one_hot("KR", alphabet="ACDEFGHIKLMNPQRSTVWY").sum() == 2
    with pytest.raises(InputError, match="distinct ASCII letters"):
        one_hot("A", alphabet="AAC")


def test_reverse_complement_flips_both_axes_for_acgt():
    x = one_hot("AACGTNG")
    np.testing.assert_array_equal(reverse_complement(x), x[::-1, ::-1])
    assert decode(reverse_complement(x)) == "CNACGTT"
    with pytest.raises(InputError, match="complement"):
        reverse_complement(one_hot("AC", "AC"), "AC")


# ---------------------------------------------------------------------------------------------
# FASTA


def test_fasta_plain(data):
    src = open_sequences(data / "seqs.fa")
    expected = parse_fasta(data / "seqs.fa")
    assert isinstance(src, SequenceSource)
    assert (src.kind, len(src), src.length, src.alphabet) == ("fasta", 8, 50, ALPHABET)
    assert src.ids == list(expected)
    x = src.read(np.arange(8))
    assert x.shape == (8, 50, 4) and x.dtype == np.float32
    for row, seq in zip(x, expected.values()):
        np.testing.assert_array_equal(row, one_hot(seq))
    assert decode(x[3])[10:12] == "NN" and decode(x[3])[30] == "N"  # N and R are zero rows
    c = src.coords()
    assert list(c["chrom"]) == [""] * 8 and (c["start"] == -1).all() and (c["end"] == -1).all()
    assert list(c["strand"]) == ["."] * 8 and src.variants() is None


def test_fasta_scattered_indices(data):
    src = open_sequences(data / "seqs.fa")
    full = src.read(slice(None))
    np.testing.assert_array_equal(src.read([6, 1, 6, -1, 3]), full[[6, 1, 6, 7, 3]])
    np.testing.assert_array_equal(src.read(5), full[5:6])
    np.testing.assert_array_equal(src.read(np.arange(8) % 3 == 0), full[[0, 3, 6]])
    assert src.read([]).shape == (0, 50, 4)
    with pytest.raises(IndexError):
        src.read([8])


def test_fasta_bgzip_equals_plain(data):
    """The fixture is bgzip output in 100-byte blocks: read in place through a .fai and .gzi."""
    plain = open_sequences(data / "seqs.fa")
    gz = open_sequences(data / "seqs.fa.gz")
    assert gz._mode == "indexed" and gz._fasta.gzi is not None and os.path.exists(gz._fasta.gzi)
    assert gz.ids == plain.ids
    np.testing.assert_array_equal(gz.read([7, 0, 4, 5]), plain.read([7, 0, 4, 5]))
    np.testing.assert_array_equal(gz.read(slice(None)), plain.read(slice(None)))


def test_fasta_bgzip_made_by_pysam(tmp_path):
    import pysam

    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(400)]
    text = "".join(f">r{i}\n" + "".join(s[k : k + 60] + "\n" for k in range(0, 300, 60))
                   for i, s in enumerate(seqs))
    plain = write(tmp_path / "many.fa", text)
    pysam.tabix_compress(plain, str(tmp_path / "many.fa.gz"))
    src = open_sequences(tmp_path / "many.fa.gz")
    assert src._mode == "indexed" and (src.kind, len(src), src.length) == ("fasta", 400, 300)
    idx = [399, 0, 213, 57]
    np.testing.assert_array_equal(src.read(idx), oracle_one_hot([seqs[i] for i in idx]))
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read(idx), oracle_one_hot([seqs[i] for i in idx]))


def test_fasta_plain_gzip_read_through_cache(data, tmp_path, cache):
    """A gzip file that is not bgzip is decompressed once into the cache and read indexed;
    a worker without the cache file rebuilds it."""
    text = (data / "seqs.fa").read_bytes()
    path = tmp_path / "one.fasta.gz"
    path.write_bytes(gzip.compress(text))
    plain = open_sequences(data / "seqs.fa")
    src = open_sequences(path)
    assert src._mode == "copy" and os.path.dirname(src._copy) == str(cache)
    assert src.ids == plain.ids and os.path.exists(src._copy + ".fai")
    np.testing.assert_array_equal(src.read([6, 2]), plain.read([6, 2]))
    np.testing.assert_array_equal(src.read(slice(None)), plain.read(slice(None)))
    os.remove(src._copy)
    os.remove(src._copy + ".fai")
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read([1]), plain.read([1]))
    assert os.path.exists(src._copy)
    assert open_sequences(path)._copy == src._copy  # the same file maps to the same cache copy


def test_fasta_cache_copy_of_a_changed_file_is_not_rebuilt(data, tmp_path):
    path = tmp_path / "c.fa.gz"
    path.write_bytes(gzip.compress((data / "seqs.fa").read_bytes()))
    src = open_sequences(path)
    path.write_bytes(gzip.compress((data / "seqs.fa").read_bytes().replace(b"seq0", b"new0")))
    os.remove(src._copy)
    with pytest.raises(InputError, match=r"c\.fa\.gz: the file changed since it was opened"):
        pickle.loads(pickle.dumps(src)).read([0])


@pytest.mark.parametrize("text, why", [
    (">a\nACGT\nAC\nACGT\n>b\nAAAAAAAAAA\n", "uneven lines"),
    (">a\nAC GT\n>b\nACGT\n", "a space inside a record"),
    (">a\nACGT\n>a\nTTTT\n", "a repeated name"),
])
def test_fasta_htslib_cannot_read_in_place_read_through_cache(tmp_path, text, why):
    src = quiet_open(write(tmp_path / "odd.fa", text))
    assert src._mode == "copy", why
    assert decode(src.read(slice(None))) == parse_records(text)
    assert decode(pickle.loads(pickle.dumps(src)).read([1, 0])) == parse_records(text)[::-1]


def parse_records(text):
    """Letters of each record, in order (repeated names kept)."""
    return ["".join(part.split("\n", 1)[1].split()) for part in text.split(">")[1:]]


def test_fasta_plus_line_is_a_bad_character(tmp_path):
    with pytest.raises(InputError, match=r"record 'a' \(#1\) position 5: invalid character '\+'"):
        open_sequences(write(tmp_path / "q.fa", ">a\nACGT\n+\nIIII\n"))


def test_fasta_reads_only_requested_records(tmp_path):
    """Records other than the ones read are destroyed after indexing: reading still works."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(2000)]
    path = write(tmp_path / "big.fa", "".join(f">r{i}\n{s[:100]}\n{s[100:]}\n" for i, s in enumerate(seqs)))
    src = open_sequences(path)
    assert src._mode == "indexed"
    raw = bytearray(open(path, "rb").read())
    keep = [5, 1234]
    for i in range(len(seqs)):
        if i not in keep:
            start = raw.index(f">r{i}\n".encode()) + len(f">r{i}\n")
            raw[start : start + 201] = b"!" * 100 + b"\n" + b"!" * 100  # letters -> "!"
    open(path, "wb").write(bytes(raw))
    x = src.read([1234, 5])
    np.testing.assert_array_equal(x, oracle_one_hot([seqs[1234], seqs[5]]))
    with pytest.raises(InputError, match=r"record 'r6' \(#7\) position 1: invalid character '!'"):
        src.read([6])


def test_fasta_bad_character_names_file_record_position(tmp_path):
    path = write(tmp_path / "bad.fa", ">a\nACGTACGTAC\n>b x\nACGTA\nCGXAC\n")
    with pytest.raises(InputError) as err:
        open_sequences(path)
    msg = str(err.value)
    assert "bad.fa" in msg and "record 'b' (#2) position 8" in msg and "'X'" in msg and "\n" not in msg


def test_fasta_whitespace_and_crlf(tmp_path):
    path = write(tmp_path / "crlf.fa", ">a\r\nACG T\r\nAC\t\r\n\r\n>b\r\nTTTTTT\r\n")
    src = open_sequences(path)
    assert src.ids == ["a", "b"] and src.length == 6
    assert decode(src.read([0, 1])) == ["ACGTAC", "TTTTTT"]


def test_fasta_lengths_and_resize(tmp_path):
    path = write(tmp_path / "var.fa", ">a\nACGTACGT\n>b\nACGTAC\n>c\nTTACGTACGTGG\n")
    with pytest.raises(InputError, match=r"var\.fa: record 'b' \(#2\) has length 6 but record 'a' has length 8"):
        open_sequences(path)
    with pytest.raises(InputError, match=r"var\.fa: record 'b' \(#2\) has length 6, expected 8"):
        open_sequences(path, length=8)
    src = open_sequences(path, length=8, resize=True)
    assert decode(src.read(slice(None))) == ["ACGTACGT", "NACGTACN", "ACGTACGT"]
    c = src.coords()
    assert list(c["pad_left"]) == [0, 1, 0] and list(c["pad_right"]) == [0, 1, 0]
    assert decode(open_sequences(path, length=5, resize=True).read([1])[0]) == "ACGTA"


def test_fasta_empty_and_not_fasta(tmp_path):
    for name, text in [("empty.fa", ""), ("blank.fa", "\n\n")]:
        with pytest.raises(InputError, match=rf"{name}: holds no sequences"):
            open_sequences(write(tmp_path / name, text))
    with pytest.raises(InputError, match="before the first '>'"):
        open_sequences(write(tmp_path / "x.fa", "ACGT\n>a\nACGT\n"))
    with pytest.raises(InputError, match="is empty"):
        open_sequences(write(tmp_path / "e.fa", ">a\n>b\nAC\n"))
    gz = tmp_path / "empty.fa.gz"
    gz.write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="holds no sequences"):
        open_sequences(gz)
    with pytest.raises(InputError, match="no such file"):
        open_sequences(tmp_path / "missing.fa")


def test_directory_input_says_it_is_a_directory(tmp_path, data):
    (tmp_path / "inputs.fa").mkdir()
    with pytest.raises(InputError, match=r"inputs\.fa: is a directory; expected a FASTA, BED, VCF or \.npy file"):
        open_sequences(tmp_path / "inputs.fa")
    (tmp_path / "g").mkdir()
    with pytest.raises(InputError, match=r"g: is a directory; expected a genome FASTA file"):
        open_sequences(data / "regions.bed", genome=tmp_path / "g", length=L)


def test_fasta_duplicate_names_renamed(tmp_path):
    path = write(tmp_path / "dup.fa", ">a\nAC\n>a\nGT\n>b\nTT\n")
    with pytest.warns(SequenceWarning, match="repeat"):
        src = open_sequences(path)
    assert src.ids == ["a", "a#2", "b"]
    assert decode(src.read(slice(None))) == ["AC", "GT", "TT"]  # each copy reads its own letters


def test_fasta_header_coordinates(tmp_path):
    path = write(tmp_path / "bt.fa", ">chr1:100-108(+)\nACGTACGT\n>chr2:10-18(-)\nACGTACGT\n>n::chr3:5-9\nACGT\n")
    src = open_sequences(path, length=6, resize=True)
    c = src.coords()
    assert list(c["chrom"]) == ["chr1", "chr2", "chr3"]
    assert list(c["start"]) == [101, 11, 5] and list(c["end"]) == [107, 17, 9]  # chr3: padded
    assert list(c["strand"]) == ["+", "-", "."]
    assert genomic_position(c, 0, 0) == 101 and genomic_position(c, 1, 0) == 16
    assert genomic_position(c, 2, 0) == -1 and genomic_position(c, 2, 1) == 5  # padding, then chr3:5


# ---------------------------------------------------------------------------------------------
# BED + genome


def test_bed_windows_strands_and_padding(data):
    genome = parse_fasta(data / "genome.fa")
    with pytest.warns(SequenceWarning, match="2 window"):
        src = open_sequences(data / "regions.bed", genome=data / "genome.fa", length=L)
    assert src.kind == "bed" and len(src) == 6 and src.genome == str(data / "genome.fa")
    assert src.ids[:3] == ["chr1:100-200(+)", "chr1:400-500(-)", "chr2:1000-1100(.)"]
    assert src.ids[5] == "chr2:250-350(.)"  # centred on a 1 bp interval
    x = src.read(slice(None))
    assert x.shape == (6, L, 4)
    assert decode(x[0]) == genome["chr1"][100:200].upper()
    np.testing.assert_array_equal(x[1], one_hot(genome["chr1"][400:500])[::-1, ::-1])
    assert decode(x[2]) == genome["chr2"][1000:1100]
    # off the start of chr1 on + (window -15..85): 15 N rows first
    assert decode(x[3]) == "N" * 15 + genome["chr1"][:85]
    # off the end of chr3 on - (window 1440..1540): after reverse complement the padding comes first
    assert not x[4, :40].any()
    np.testing.assert_array_equal(x[4, 40:], one_hot(genome["chr3"][1440:])[::-1, ::-1])
    c = src.coords()
    # windows off a chromosome end are clipped to it, in their ids and coordinates
    assert src.ids[3:5] == ["chr1:0-85(+)", "chr3:1440-1500(-)"]
    assert list(c["start"][:5]) == [100, 400, 1000, 0, 1440]
    assert list(c["end"][:5]) == [200, 500, 1100, 85, 1500]
    assert genomic_position(c, 3, 15) == 0 and genomic_position(c, 3, 14) == -1
    assert genomic_position(c, 4, 40) == 1499 and genomic_position(c, 4, 39) == -1
    assert list(c["strand"]) == ["+", "-", ".", "+", "-", "."]
    assert list(c["pad_left"]) == [0, 0, 0, 15, 40, 0] and not c["pad_right"].any()


def test_bed_reverse_complement_matches_plus_strand(tmp_path, data):
    bed = write(tmp_path / "pm.bed", "chr2\t200\t300\ta\t0\t+\nchr2\t200\t300\tb\t0\t-\n")
    x = open_sequences(bed, genome=data / "genome.fa", length=L).read([0, 1])
    np.testing.assert_array_equal(x[1], x[0][::-1, ::-1])


def test_genomic_position_is_strand_aware(data):
    src = quiet_open(data / "regions.bed", genome=data / "genome.fa", length=L)
    c = src.coords()
    assert genomic_position(c, 0, 0) == 100 and genomic_position(c, 0, 99) == 199
    assert genomic_position(c, 1, 0) == 499 and genomic_position(c, 1, 99) == 400
    assert genomic_position(c, 3, 14) == -1 and genomic_position(c, 3, 15) == 0
    assert genomic_position(c, 4, 39) == -1 and genomic_position(c, 4, 40) == 1499
    np.testing.assert_array_equal(genomic_position(c, 0, np.arange(3)), [100, 101, 102])


def test_bed_errors_name_file_and_line(tmp_path, data):
    genome = data / "genome.fa"
    bed = write(tmp_path / "bad.bed", "# c\nchr1\t1\t10\nchrZ\t5\t20\n")
    with pytest.raises(InputError, match=r"bad\.bed: line 3: chromosome 'chrZ' is not in the genome"):
        open_sequences(bed, genome=genome, length=L)
    with pytest.raises(InputError, match="needs length="):
        open_sequences(bed, genome=genome)
    with pytest.raises(InputError, match="needs genome="):
        open_sequences(bed, length=L)
    with pytest.raises(InputError, match=r"line 1: start and end must be integers"):
        open_sequences(write(tmp_path / "b2.bed", "chr1\tx\t10\n"), genome=genome, length=L)
    with pytest.raises(InputError, match=r"line 1: strand must be"):
        open_sequences(write(tmp_path / "b3.bed", "chr1\t1\t10\tn\t0\t*\n"), genome=genome, length=L)
    with pytest.raises(InputError, match="holds no sequences"):
        open_sequences(write(tmp_path / "b4.bed", "track x\n"), genome=genome, length=L)


def test_bed_genome_read_lazily(tmp_path, data):
    """Genome bases outside the windows are destroyed after open: reads still work."""
    genome = parse_fasta(data / "genome.fa")
    bed = write(tmp_path / "one.bed", "chr2\t1000\t1100\nchr2\t1200\t1300\n")
    src = open_sequences(bed, genome=data / "genome.fa", length=L)
    text = (data / "genome.fa").read_text()
    lines = text.split("\n")
    # chr2 starts after chr1's header + 50 lines; its bases 1000..1099 are on lines 16..18 of chr2
    first = lines.index(">chr2") + 1
    keep = set(range(first + 1000 // 60, first + 1100 // 60 + 1))
    lines = [ln if (i in keep or ln.startswith(">")) else "!" * len(ln) for i, ln in enumerate(lines)]
    (data / "genome.fa").write_text("\n".join(lines))
    assert decode(src.read([0])[0]) == genome["chr2"][1000:1100]
    with pytest.raises(InputError, match=r"genome\.fa: chr2 position 1201 .*'chr2:1200-1300\(\.\)'.*'!'"):
        src.read([1])


def test_genome_index_in_read_only_directory(tmp_path, data, monkeypatch, cache):
    """A genome without a .fai in a folder we cannot write gets its index in the cache folder."""
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(data / "genome.fa", ro / "genome.fa")
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anywhere: let the folder report itself read-only
        real_access = os.access
        def access(path, mode, **kwargs):
            return False if str(path) == str(ro) else real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    try:
        bed = write(tmp_path / "a.bed", "chr1\t100\t200\n")
        src = open_sequences(bed, genome=ro / "genome.fa", length=L)
        assert os.path.dirname(src._genome.fai) == str(cache)
        os.remove(src._genome.fai)  # a worker without the index builds it again
        clone = pickle.loads(pickle.dumps(src))
        assert decode(clone.read([0])[0]) == parse_fasta(data / "genome.fa")["chr1"][100:200].upper()
        assert not (ro / "genome.fa.fai").exists()
    finally:
        ro.chmod(0o755)


def test_genome_index_built_beside_and_rebuilt_when_outdated(tmp_path, data):
    genome = tmp_path / "g.fa"
    shutil.copy(data / "genome.fa", genome)
    bed = write(tmp_path / "a.bed", "chr3\t100\t200\n")
    src = open_sequences(bed, genome=genome, length=L)
    assert src._genome.fai == str(genome) + ".fai"
    assert (genome.parent / "g.fa.fai").read_text() == (data / "genome.fa.fai").read_text()
    # an index older than its FASTA (here: of another genome) is not trusted
    (genome.parent / "g.fa.fai").write_text("chr3\t10\t6\t60\t61\n")
    os.utime(genome.parent / "g.fa.fai", ns=(0, 0))
    src = open_sequences(bed, genome=genome, length=L)
    assert decode(src.read([0])[0]) == parse_fasta(genome)["chr3"][100:200]


def test_bgzip_genome_for_bed_and_vcf(tmp_path, data):
    import pysam

    genome = str(tmp_path / "genome.fa.gz")
    pysam.tabix_compress(str(data / "genome.fa"), genome)
    for name in ("regions.bed", "variants.vcf"):
        plain = quiet_open(data / name, genome=data / "genome.fa", length=L)
        src = quiet_open(data / name, genome=genome, length=L)
        assert src.genome == genome and src.ids == plain.ids and os.path.exists(genome + ".gzi")
        np.testing.assert_array_equal(src.read(slice(None)), plain.read(slice(None)))
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(src)).read([2, 0]), plain.read([2, 0]))


def test_genome_that_cannot_be_read_by_position_says_how_to_fix_it(tmp_path, data):
    bed = data / "regions.bed"
    gz = tmp_path / "hg.fa.gz"
    gz.write_bytes(gzip.compress((data / "genome.fa").read_bytes()))
    with pytest.raises(InputError) as err:
        open_sequences(bed, genome=gz, length=L)
    msg = str(err.value)
    assert "hg.fa.gz: the genome is gzip-compressed but not with bgzip" in msg and "| bgzip >" in msg
    assert "\n" not in msg and "BioPython" not in msg
    uneven = write(tmp_path / "uneven.fa", ">chr1\nACGTACGT\nACG\nACGTACGT\n")
    with pytest.raises(InputError, match=r"uneven\.fa: cannot index the genome FASTA .*samtools faidx"):
        open_sequences(bed, genome=uneven, length=L)
    with pytest.raises(InputError, match=r"no such genome FASTA"):
        open_sequences(bed, genome=tmp_path / "missing.fa", length=L)


# ---------------------------------------------------------------------------------------------
# VCF + genome


def test_vcf_windows_split_dedupe_symbolic(data):
    genome = parse_fasta(data / "genome.fa")
    with pytest.warns(SequenceWarning) as record:
        src = open_sequences(data / "variants.vcf", genome=data / "genome.fa", length=L)
    text = " | ".join(str(w.message) for w in record)
    assert "dropped 2 exact duplicate" in text and "symbolic" in text and "padded" in text
    assert src.kind == "vcf"
    assert src.ids == ["chr1:150:C>G", "chr1:600:A>C", "chr1:600:A>G", "chr2:900:CCA>C", "chr3:10:T>C", "chr3:1499:A>G"]
    v = src.variants()
    assert (v["variant_pos"] == L // 2).all()
    assert list(v["ref"]) == ["C", "A", "A", "CCA", "T", "A"] and list(v["alt"]) == ["G", "C", "G", "C", "C", "G"]
    assert list(v["vcf_id"][:3]) == ["rs1", "rs2", "rs2"]
    x = src.read(slice(None))
    for i, seq in enumerate(decode(x)):
        assert seq[L // 2 : L // 2 + len(v["ref"][i])] == v["ref"][i]
    assert decode(x[0]) == genome["chr1"][149 - L // 2 : 149 + L // 2].upper()
    c = src.coords()
    assert c["start"][0] == 149 - L // 2 and c["end"][0] == 149 + L // 2
    assert genomic_position(c, 0, L // 2) == 149
    assert c["pad_left"][4] == L // 2 - 9 and c["pad_right"][5] == 1448 + L - 1500
    reasons = [(s["line"], s["record"], s["reason"].split()[0]) for s in src.skipped]
    assert reasons == [(9, "chr1:150:C>G", "exact"), (10, "chr1:600:A>G", "exact"), (11, "chr2:800:A><DEL>", "symbolic,")]


def vcf_text(rows):
    head = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    return head + "".join(f"chr1\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in rows)


def test_vcf_ref_mismatch_error_and_skip(tmp_path, data):
    genome = parse_fasta(data / "genome.fa")["chr1"].upper()
    wrong = next(b for b in "ACGT" if b != genome[199])
    alt = next(b for b in "ACGT" if b not in (genome[99], "A"))
    path = write(tmp_path / "mm.vcf", vcf_text([(100, genome[99], alt), (200, wrong, "A")]))
    with pytest.raises(InputError) as err:
        open_sequences(path, genome=data / "genome.fa", length=L)
    msg = str(err.value)
    assert f"mm.vcf: line 5: record chr1:200:{wrong}>A: REF '{wrong}' does not match the genome" in msg
    assert f"('{genome[199]}' at chr1:200)" in msg and "skip_mismatches=True" in msg
    with pytest.warns(SequenceWarning, match="REF does not match"):
        src = open_sequences(path, genome=data / "genome.fa", length=L, skip_mismatches=True)
    assert src.ids == [f"chr1:100:{genome[99]}>{alt}"]
    assert src.skipped == [{"line": 5, "record": f"chr1:200:{wrong}>A", "reason": src.skipped[0]["reason"]}]
    assert "does not match" in src.skipped[0]["reason"]


def test_vcf_ref_check_ignores_soft_masking(tmp_path, data):
    genome = parse_fasta(data / "genome.fa")["chr1"]
    assert genome[1049].islower()
    ref = genome[1049].upper()
    path = write(tmp_path / "sm.vcf", vcf_text([(1050, ref.lower(), "N"), (1050, ref, next(b for b in "ACGT" if b != ref))]))
    src = open_sequences(path, genome=data / "genome.fa", length=L)
    assert src.ids[0] == f"chr1:1050:{ref}>N" and len(src) == 2
    assert decode(src.read([0])[0])[L // 2] == ref


def test_vcf_errors(tmp_path, data):
    genome = data / "genome.fa"
    path = write(tmp_path / "chr.vcf", vcf_text([]) + "chrQ\t5\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputError, match=r"chr\.vcf: line 4: chromosome 'chrQ' is not in the genome"):
        open_sequences(path, genome=genome, length=L)
    path = write(tmp_path / "pos.vcf", vcf_text([]) + "chr1\tabc\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(InputError, match=r"pos\.vcf: line 4: cannot parse"):
        open_sequences(path, genome=genome, length=L)
    with pytest.raises(InputError, match="holds no sequences"):
        open_sequences(write(tmp_path / "none.vcf", vcf_text([])), genome=genome, length=L)
    with pytest.raises(InputError, match="cannot read as VCF"):
        open_sequences(write(tmp_path / "junk.vcf", "junk\n"), genome=genome, length=L)


def test_vcf_position_past_chromosome_end(tmp_path, data):
    genome = data / "genome.fa"  # chr1 has 3000 bp
    ref = parse_fasta(genome)["chr1"][99].upper()
    path = write(tmp_path / "end.vcf", vcf_text([(100, ref, "N"), (3001, "A", "C")]))
    with pytest.raises(InputError) as err:
        open_sequences(path, genome=genome, length=L)
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 5: record chr1:3001:A>C: chr1:3001 is past the end of chr1, "
                          "which has length 3000")
    assert "\n" not in msg and "does not match" not in msg
    with pytest.warns(SequenceWarning, match="past the end of their chromosome"):
        src = open_sequences(path, genome=genome, length=L, skip_mismatches=True)
    assert len(src) == 1 and src.skipped[0]["line"] == 5 and "length 3000" in src.skipped[0]["reason"]
    deletion = write(tmp_path / "del.vcf", vcf_text([(2999, "AAA", "A")]))
    with pytest.raises(InputError, match=r"line 4: record chr1:2999:AAA>A: chr1:2999-3001 is past the end"):
        open_sequences(deletion, genome=genome, length=L)


def test_vcf_gzipped(tmp_path, data):
    import pysam

    plain = quiet_open(data / "variants.vcf", genome=data / "genome.fa", length=L)
    gz = tmp_path / "v.vcf.gz"
    gz.write_bytes(gzip.compress((data / "variants.vcf").read_bytes()))
    src = quiet_open(gz, genome=data / "genome.fa", length=L)
    assert src.ids == plain.ids and [s["line"] for s in src.skipped] == [9, 10, 11]
    bgz = tmp_path / "b.vcf.gz"
    pysam.tabix_compress(str(data / "variants.vcf"), str(bgz))
    src = quiet_open(bgz, genome=data / "genome.fa", length=L)
    assert src.ids == plain.ids and [s["line"] for s in src.skipped] == [9, 10, 11]


# ---------------------------------------------------------------------------------------------
# .npy


def test_npy(tmp_path):
    rng = np.random.default_rng(1)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (7, 30))]
    x[2, 5] = 0
    path = tmp_path / "x.npy"
    np.save(path, x)
    src = open_sequences(path)
    assert (src.kind, len(src), src.length) == ("npy", 7, 30) and src.ids[0] == "seq0"
    np.testing.assert_array_equal(src.read([4, 2]), x[[4, 2]])
    with pytest.raises(InputError, match=r"sequences have length 30, expected 20"):
        open_sequences(path, length=20)
    np.testing.assert_array_equal(open_sequences(path, length=20, resize=True).read([1])[0], x[1, 5:25])
    np.save(tmp_path / "bad.npy", x[:, :, :3])
    with pytest.raises(InputError, match=r"bad\.npy: expected a one-hot array of shape \(N, L, 4\), got shape \(7, 30, 3\)"):
        open_sequences(tmp_path / "bad.npy")
    np.save(tmp_path / "empty.npy", x[:0])
    with pytest.raises(InputError, match="holds no sequences"):
        open_sequences(tmp_path / "empty.npy")
    x[3, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(InputError, match=r"sequence #4 position 5: non-finite"):
        open_sequences(tmp_path / "nan.npy").read([3])


def test_unknown_format_sniffed(tmp_path, data):
    shutil.copy(data / "seqs.fa", tmp_path / "seqs.txt")
    assert open_sequences(tmp_path / "seqs.txt").kind == "fasta"
    with pytest.raises(InputError, match="unknown input format"):
        open_sequences(write(tmp_path / "what.txt", "hello\n"))


def test_can_open_picks_by_name_then_by_first_bytes(tmp_path, data):
    genome = data / "genome.fa"
    assert readers() == (BedSource, FastaSource, NpySource, VcfSource)
    np.save(tmp_path / "x.bin", random_one_hot(2, 5))  # np.save adds .npy
    shutil.copy(tmp_path / "x.bin.npy", tmp_path / "x.bin")
    shutil.copy(data / "variants.vcf", tmp_path / "calls.txt")
    shutil.copy(data / "regions.bed", tmp_path / "regions.tsv")
    shutil.copy(data / "seqs.fa.gz", tmp_path / "seqs.gz")
    shutil.copy(data / "variants.vcf", tmp_path / "looks_like_vcf.fa")
    cases = {
        "x.bin": NpySource, "calls.txt": VcfSource, "seqs.gz": FastaSource,
        "looks_like_vcf.fa": FastaSource,  # a name a reader claims wins over the first bytes
    }
    for name, reader in cases.items():
        assert [r for r in readers() if r.can_open(tmp_path / name)] == [reader], name
    # a BED has no magic bytes: recognised by its content only when a genome comes with it
    assert [r for r in readers() if r.can_open(tmp_path / "regions.tsv", genome)] == [BedSource]
    assert not any(r.can_open(tmp_path / "regions.tsv") for r in readers())
    assert len(quiet_open(tmp_path / "regions.tsv", genome=genome, length=L)) == 6
    assert open_sequences(tmp_path / "x.bin").kind == "npy"
    with pytest.raises(InputError, match="before the first '>'"):
        open_sequences(tmp_path / "looks_like_vcf.fa")


def test_coords_and_variants_none_where_a_format_has_none(tmp_path, data):
    class Letters(SequenceSource):
        """A reader without coordinates: strings in memory."""

        kind = "letters"

        def __init__(self, seqs):
            super().__init__("<memory>", len(seqs[0]), ALPHABET, [f"s{i}" for i in range(len(seqs))])
            self.seqs = seqs

        def _read_sorted(self, idx):
            return np.stack([one_hot(self.seqs[i]) for i in idx])

    src = Letters(["ACGT", "TTGA"])
    assert src.coords() is None and src.variants() is None
    assert decode(src.read([1, 1, 0])) == ["TTGA", "TTGA", "ACGT"]
    assert open_sequences(data / "seqs.fa").variants() is None
    np.save(tmp_path / "x.npy", random_one_hot(3, 6))
    npy = open_sequences(tmp_path / "x.npy")
    assert npy.variants() is None and list(npy.coords()["chrom"]) == [""] * 3


# ---------------------------------------------------------------------------------------------
# sending sources to workers


@pytest.mark.parametrize("name", ["seqs.fa", "seqs.fa.gz", "regions.bed", "variants.vcf"])
def test_pickle_is_small_and_round_trips(data, name):
    src = quiet_open(data / name, genome=data / "genome.fa" if name[-3:] in ("bed", "vcf") else None, length=L if name[-3:] in ("bed", "vcf") else None)
    before = src.read(slice(None))  # opens handles; they must not travel
    blob = pickle.dumps(src)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    assert clone.ids == src.ids and clone.kind == src.kind and clone.length == src.length
    np.testing.assert_array_equal(clone.read(slice(None)), before)
    for k, v in src.coords().items():
        np.testing.assert_array_equal(clone.coords()[k], v)


def test_pickle_does_not_grow_with_sequence_length(tmp_path):
    path = write(tmp_path / "long.fa", "".join(f">s{i}\n{'ACGT' * 5000}\n" for i in range(50)))
    assert len(pickle.dumps(open_sequences(path))) < 4000  # the file is 1 MB


def test_pickle_of_many_records_is_compact_and_exact(tmp_path):
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(5000)]
    path = write(tmp_path / "many.fa", "".join(f">chr1:{10 * i}-{10 * i + 30}\n{s}\n" for i, s in enumerate(seqs)))
    src = open_sequences(path)
    blob = pickle.dumps(src)
    assert len(blob) < 30_000  # about 6 bytes a record: ids, offsets and coordinates compressed
    clone = pickle.loads(blob)
    assert clone.ids == src.ids
    for k, v in src.coords().items():
        np.testing.assert_array_equal(clone.coords()[k], v)
    idx = rng.integers(0, 5000, 50)
    np.testing.assert_array_equal(clone.read(idx), src.read(idx))
    assert genomic_position(clone.coords(), 4999, 0) == 49990


def test_concurrent_reads_from_threads(data):
    for src in (open_sequences(data / "seqs.fa.gz"), quiet_open(data / "regions.bed", genome=data / "genome.fa", length=L)):
        full = src.read(slice(None))
        chunks = [[i, (i + 3) % len(src)] for i in range(len(src))] * 8
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(src.read, chunks))
        for idx, x in zip(chunks, results):
            np.testing.assert_array_equal(x, full[idx])


def test_import_is_free_of_tensorflow():
    code = "import sys, fastism_dist.io; print('tensorflow' in sys.modules, 'pysam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
