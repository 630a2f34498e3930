"""Write the tiny deterministic test inputs in this folder.

Run from anywhere: ``python tests/data/make_fixtures.py``. Writes

- ``genome.fa`` (+ ``genome.fa.fai``): chr1 3000 bp, chr2 2400 bp, chr3 1500 bp of random ACGT,
  60 letters a line; chr1:1000-1100 soft-masked (lower case), chr2:500-560 N.
- ``seqs.fa``: 8 records of 50 bp, some wrapped at 20 letters, one lower case, one with N and R.
- ``seqs.fa.gz``: the same, BGZF-compressed (``bgzip`` layout) in 100-byte blocks.
- ``regions.bed``: 6 intervals on both strands, two near chromosome ends.
- ``variants.vcf``: SNVs, a multi-allelic record, an exact duplicate, a symbolic ALT, a deletion
  and variants near chromosome ends; every REF matches ``genome.fa``.
"""

import os
import random
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMS = [("chr1", 3000), ("chr2", 2400), ("chr3", 1500)]


def genome():
    rng = random.Random(7)
    seqs = {}
    for name, n in CHROMS:
        s = [rng.choice("ACGT") for _ in range(n)]
        seqs[name] = s
    seqs["chr1"][1000:1100] = [c.lower() for c in seqs["chr1"][1000:1100]]
    seqs["chr2"][500:560] = ["N"] * 60
    return {k: "".join(v) for k, v in seqs.items()}


def write_fasta(path, records, width):
    """Write records; ``width`` (int or per-record list) letters a line, 0 for one line."""
    widths = width if isinstance(width, list) else [width] * len(records)
    with open(path, "w", newline="\n") as f:
        for (name, seq), w in zip(records, widths):
            f.write(f">{name}\n")
            step = w or len(seq)
            for i in range(0, len(seq), step):
                f.write(seq[i : i + step] + "\n")


def write_fai(path, records, width):
    offset = 0
    lines = []
    for name, seq in records:
        offset += len(name) + 2
        lines.append(f"{name}\t{len(seq)}\t{offset}\t{width}\t{width + 1}\n")
        offset += len(seq) + -(-len(seq) // width)
    with open(path + ".fai", "w", newline="\n") as f:
        f.writelines(lines)


def bgzf_block(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    cdata = c.compress(data) + c.flush()
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", 6)
    header += b"BC" + struct.pack("<HH", 2, 18 + len(cdata) + 8 - 1)
    return header + cdata + struct.pack("<II", zlib.crc32(data), len(data))


def write_bgzf(path, data, block=100):
    with open(path, "wb") as f:
        for i in range(0, len(data), block):
            f.write(bgzf_block(data[i : i + block]))
        f.write(bgzf_block(b""))  # the BGZF end-of-file marker


def main():
    g = genome()
    gpath = os.path.join(HERE, "genome.fa")
    write_fasta(gpath, list(g.items()), 60)
    write_fai(gpath, list(g.items()), 60)

    rng = random.Random(11)
    records = []
    for i in range(8):
        s = "".join(rng.choice("ACGT") for _ in range(50))
        if i == 2:
            s = s.lower()
        if i == 3:
            s = s[:10] + "NN" + s[12:30] + "R" + s[31:]
        records.append((f"seq{i} description {i}", s))
    fpath = os.path.join(HERE, "seqs.fa")
    write_fasta(fpath, records, [20, 0, 20, 0, 20, 0, 20, 0])
    with open(fpath, "rb") as f:
        write_bgzf(fpath + ".gz", f.read())

    bed = [
        "track name=fixture",
        "# intervals on both strands; two run off chromosome ends with length 100",
        "chr1\t100\t200\tr1\t0\t+",
        "chr1\t400\t500\tr2\t0\t-",
        "chr2\t1000\t1100\tr3\t0\t.",
        "chr1\t10\t60\tr4\t0\t+",
        "chr3\t1480\t1500\tr5\t0\t-",
        "chr2\t300\t301",
    ]
    with open(os.path.join(HERE, "regions.bed"), "w", newline="\n") as f:
        f.write("\n".join(bed) + "\n")

    def ref(chrom, pos, n=1):  # 1-based VCF position
        return g[chrom][pos - 1 : pos - 1 + n].upper()

    def alt(base, k=1):
        others = [b for b in "ACGT" if b != base]
        return others[k % 3]

    rows = [
        ("chr1", 150, "rs1", ref("chr1", 150), alt(ref("chr1", 150))),
        ("chr1", 600, "rs2", ref("chr1", 600), alt(ref("chr1", 600), 0) + "," + alt(ref("chr1", 600), 1)),
        ("chr1", 150, "rs1", ref("chr1", 150), alt(ref("chr1", 150))),  # exact duplicate
        ("chr1", 600, ".", ref("chr1", 600), alt(ref("chr1", 600), 1)),  # duplicate of a split allele
        ("chr2", 800, "sv1", ref("chr2", 800), "<DEL>"),
        ("chr2", 900, "del1", ref("chr2", 900, 3), ref("chr2", 900)),
        ("chr3", 10, ".", ref("chr3", 10), alt(ref("chr3", 10))),
        ("chr3", 1499, ".", ref("chr3", 1499), alt(ref("chr3", 1499))),
    ]
    header = ["##fileformat=VCFv4.2"]
    header += [f"##contig=<ID={c},length={n}>" for c, n in CHROMS]
    header += ['##INFO=<ID=SVTYPE,Number=1,Type=String,Description="Type of structural variant">']
    header += ["#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with open(os.path.join(HERE, "variants.vcf"), "w", newline="\n") as f:
        f.write("\n".join(header) + "\n")
        for chrom, pos, vid, r, a in rows:
            info = "SVTYPE=DEL" if a.startswith("<") else "."
            f.write(f"{chrom}\t{pos}\t{vid}\t{r}\t{a}\t.\tPASS\t{info}\n")


if __name__ == "__main__":
    main()
