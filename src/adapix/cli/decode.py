"""``adapix decode``: .apx files -> images."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from ..codec import Codec
from ..container import DEFAULT_MAX_PIXELS
from ..errors import AdapixError
from ..images import save_image
from .common import Parser, expand_inputs, fail, output_path, same_file

DESCRIPTION = """Decode .apx files. The output format follows the extension of -o
(PNG by default; any format Pillow writes: .png .webp .tif .bmp .ppm, .jpg without alpha).
Directories are expanded to the .apx files they contain."""


def build_parser() -> Parser:
    p = Parser(prog="adapix decode", description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", help=".apx files or directories")
    p.add_argument("-o", "--output", help="output file (one input) or directory")
    p.add_argument("--format", default="png", help="output extension when -o is not a file "
                   "(default png)")
    p.add_argument("--model", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse files declaring more pixels (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "adapix decode"
    inputs = expand_inputs(args.inputs, {".apx"})
    if not inputs:
        return fail(prog, "no input files found")
    try:
        codec = Codec(args.model, max_pixels=args.max_pixels)
    except AdapixError as exc:
        return fail(prog, str(exc))
    many = len(inputs) > 1
    failures = 0
    suffix = "." + args.format.lower().lstrip(".")
    for src in tqdm(inputs, desc="decoding", unit="file", disable=not many or args.quiet,
                    leave=False):
        dst = output_path(src, args.output, suffix, many)
        try:
            if same_file(src, dst) or src.resolve() == dst.resolve():
                raise AdapixError(f"refusing to overwrite the input {src}")
            try:
                data = Path(src).read_bytes()
            except OSError as exc:
                raise AdapixError(f"cannot read: {exc.strerror or exc}") from None
            res = codec.decode_ex(data)
            save_image(res.image, dst)
        except AdapixError as exc:
            failures += 1
            tqdm.write(f"{prog}: error: {src}: {exc}", file=sys.stderr)
            continue
        if not args.quiet:
            h = res.header
            tqdm.write(f"{src} -> {dst}: {h.width}x{h.height}, {res.seconds:.2f} s")
    if many and not args.quiet:
        print(f"decoded {len(inputs) - failures} of {len(inputs)} files"
              + (f", {failures} failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
