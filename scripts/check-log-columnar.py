#!/usr/bin/env python3
"""Checks that polars reads a signalbox log directory column by column without losing anything.

    python3 scripts/check-log-columnar.py LOG_DIR

For `decisions-*.jsonl` and `outcomes-*.jsonl` in LOG_DIR (every replica's segments,
`<kind>-<replica>-<start>-<seq>.jsonl`, and the older names without a replica id), reads the
records with `pl.scan_ndjson(LOG_DIR/<kind>-*.jsonl).collect()` and polars' DEFAULT schema
inference (the first 100 lines), and compares every row with `json.loads` of the same line:
every key of every record must be a column, and every value (nested lists and objects included)
must come back equal; a value polars cannot read (an error) or reads as null counts as a
mismatch. Prints the polars version, the record counts and each mismatching field with its first
examples; exits 1 on any mismatch, 2 on bad usage.
"""

import glob
import json
import math
import os
import sys

import polars as pl


def same(expected, got):
    """JSON value vs the value polars read (struct fields absent in the JSON read as null)."""
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return False
        if any(k not in got or not same(v, got[k]) for k, v in expected.items()):
            return False
        return all(got[k] is None for k in got.keys() - expected.keys())
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(same(e, g) for e, g in zip(expected, got))
        )
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return expected == got or (
            isinstance(expected, float) and math.isnan(expected) and math.isnan(got)
        )
    return expected == got


def check(log_dir, kind):
    paths = sorted(glob.glob(os.path.join(log_dir, f"{kind}-*.jsonl")))
    if not paths:
        print(f"{kind}: no {kind}-*.jsonl files")
        return 1
    expected = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            expected += [json.loads(line) for line in f if line.strip()]
    pattern = os.path.join(log_dir, f"{kind}-*.jsonl")
    try:
        df = pl.scan_ndjson(pattern).collect()
    except Exception as e:  # polars raises its own exception types
        print(f"{kind}: {len(expected)} records in {len(paths)} file(s); polars failed: {e}")
        return 1
    print(
        f"{kind}: {len(expected)} records in {len(paths)} file(s); "
        f"polars read {df.height} rows, {df.width} columns"
    )
    if df.height != len(expected):
        print(f"  row count differs: {df.height} != {len(expected)}")
        return 1
    rows = df.to_dicts()
    bad = {}
    for i, (want, got) in enumerate(zip(expected, rows)):
        for key, value in want.items():
            if key not in got:
                problem = "column missing (dropped by schema inference)"
            elif not same(value, got[key]):
                problem = f"read as {got[key]!r}"
            else:
                continue
            bad.setdefault(key, []).append((i + 1, value, problem))
    for key, cases in sorted(bad.items()):
        print(f"  {key}: {len(cases)} mismatching record(s), e.g.")
        for n, value, problem in cases[:3]:
            print(f"    record {n}: {json.dumps(value)[:160]} {problem[:160]}")
    return 1 if bad else 0


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(f"polars {pl.__version__}")
    failed = check(sys.argv[1], "decisions") | check(sys.argv[1], "outcomes")
    print("mismatch" if failed else "ok: every field of every record read back")
    return failed


if __name__ == "__main__":
    sys.exit(main())
