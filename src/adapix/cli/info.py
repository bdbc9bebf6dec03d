"""``adapix info``: header, sections and decode steps of .apx files."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import container
from ..errors import AdapixError
from .common import Parser, fail


def build_parser() -> Parser:
    p = Parser(prog="adapix info", description="Show the header and the sections of .apx files, "
               "and the number of sequential decoding steps of the model that made them.")
    p.add_argument("files", nargs="+", help=".apx files")
    p.add_argument("--model", default=None, help="weights file (default: the shipped model)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failures = 0
    loaded = None
    for i, name in enumerate(args.files):
        try:
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                raise AdapixError(f"cannot read: {exc.strerror or exc}") from None
            f = container.unpack(data, max_pixels=2 ** 62)
            rows = container.describe(f, len(data))
            if loaded is None:
                from ..weights import load_weights
                try:
                    loaded = load_weights(args.model)
                except AdapixError:
                    loaded = False
            h = f.header
            if loaded and loaded.model_id == h.model_id and loaded.weights_hash == h.weights_hash:
                rows.append(("decode steps", f"{loaded.model.decode_steps} sequential "
                             f"(constant: independent of image size)"))
            else:
                rows.append(("decode steps", "unknown (the weights named above are not loaded)"))
        except AdapixError as exc:
            failures += 1
            print(f"adapix info: error: {name}: {exc}", file=sys.stderr)
            continue
        if i:
            print()
        print(name)
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
