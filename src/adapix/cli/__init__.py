"""``adapix`` command line: one subcommand per module, each a ``main(argv) -> int``.

    adapix encode IN... [-o OUT] [--quality Q] [--profile NAME]
    adapix decode IN... [-o OUT]
    adapix info FILE
    adapix train --config FILE [--set section.key=value ...]
    adapix export CKPT -o weights.safetensors
    adapix eval DIR [--codecs ...]
    adapix bench
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "encode": ("adapix.cli.encode", "compress images into .apx files"),
    "decode": ("adapix.cli.decode", "decode .apx files into PNG (or any format by extension)"),
    "info": ("adapix.cli.info", "show the header and sections of .apx files"),
    "train": ("adapix.cli.train", "train a model (configs/default.toml)"),
    "export": ("adapix.cli.export", "export a training checkpoint to a weights file"),
    "eval": ("adapix.cli.eval", "rate-distortion evaluation against other codecs"),
    "bench": ("adapix.cli.bench", "encode/decode speed and decoder complexity"),
}

USAGE = "usage: adapix {" + ",".join(COMMANDS) + "} ...\n\nAdapix, a learned image codec.\n\n" + \
    "\n".join(f"  {k:<8} {v[1]}" for k, v in COMMANDS.items()) + \
    "\n\nRun `adapix COMMAND --help` for the options of a command."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from adapix import __version__
        print(f"adapix {__version__}")
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(f"adapix: error: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    from adapix.hardware import tune_allocator
    tune_allocator()  # large tensors from the heap, not mmap (adapix.hardware): faster everywhere
    module = importlib.import_module(COMMANDS[cmd][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
