"""Writes an `adapix eval` per-image CSV from eval cache files (``<out>/cache/<codec>.jsonl``).

For a run that has not finished: `adapix eval` writes ``per_image.csv`` only at its end,
while its cache holds every point measured so far. The CSV feeds ``scripts/rd_cost_per_quality.py``:

    python scripts/cache_to_csv.py /tmp/partial.csv docs/results/profiles_s14_kodak24_fast_cache.jsonl \
        docs/results/profiles_s14_kodak24_best_cache.jsonl
    python scripts/rd_cost_per_quality.py /tmp/partial.csv adapix-best adapix-fast
"""

from __future__ import annotations

import sys

from adapix.eval.results import Measurement, read_jsonl, write_per_image_csv


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rows = [Measurement.from_dict(rec) for path in argv[1:] for rec in read_jsonl(path)]
    write_per_image_csv(rows, argv[0])
    print(f"{len(rows)} rows -> {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
