"""Recount the FLOP-bound columns of finished Table 1 result files, keeping their timings.

When ``plan_report`` changes how it counts multiply-adds, the bounds of a Table 1 run (hours of
timings) can be brought up to date without timing anything again: each file's ``bound`` and
``% of bound`` are recomputed from the models it names, a note says when and which timings they
stand beside, and the JSON and markdown files are rewritten in place.

Run from the repository root::

    python -m benchmarks.recount_bounds benchmarks/results/table1_*.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

try:
    from benchmarks import common, table1
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import common
    import table1


def recount(path):
    """Rewrite one Table 1 result file (``<name>.json`` and ``<name>.md``) with fresh bounds.

    Returns
    -------
    (Path, Path)
        The JSON and markdown paths written.
    """
    path = Path(path)
    data = json.loads(path.read_text())
    meta, rows = data["meta"], data["rows"]
    settings = meta.get("settings", {})
    groups = {}
    for row in rows:
        groups.setdefault((row["model"], int(row["seq_len"])), []).append(row)
    for (model_name, seq_len), group in groups.items():
        kwargs = table1.TINY.get(model_name, {}) if settings.get("tiny") else {}
        model = table1.build_model(model_name, seq_len, kwargs, settings.get("seed", 0))
        table1.add_ratios(group, common.flop_bound(model))
    timed = meta.get("timed", meta.get("written"))
    recounted = time.strftime("%Y-%m-%d")
    meta = dict(meta, timed=timed, bounds_recounted=recounted)
    notes = table1.NOTES + [f"Timings of {timed}; FLOP bounds recounted on {recounted} "
                            "(`python -m benchmarks.recount_bounds`)."]
    return common.write_results(path.stem, rows, table1.COLUMNS, meta, out_dir=path.parent,
                                title=table1.TITLE, notes=notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="Table 1 result files")
    args = parser.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        parser.error(f"no such result file: {missing[0]}")
    return [p for f in args.files for p in recount(f)]


if __name__ == "__main__":
    for written in main():
        print(written)
