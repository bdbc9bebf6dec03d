"""Evaluation and benchmark suite of Adapix (issue 4).

Modules (imported on demand, so ``import adapix.eval`` stays light):

* :mod:`adapix.eval.codecs`: the :class:`~adapix.eval.codecs.Codec` interface, JPEG/WebP/AVIF/HEIC/
  JPEG XL/JPEG 2000/VVC/Adapix codecs and the ``CODECS`` registry,
* :mod:`adapix.eval.metrics`: RGB PSNR and MS-SSIM,
* :mod:`adapix.eval.results`: per-image measurements, curves, the common JSON format, reference curves,
* :mod:`adapix.eval.bdrate`: BD-rate / BD-PSNR and the markdown table,
* :mod:`adapix.eval.plots`: RD plots,
* :mod:`adapix.eval.runner`: :func:`~adapix.eval.runner.run_eval`.

Command line: ``adapix eval DIR`` / ``python -m adapix.cli.eval DIR`` (see ``--help``).
"""

__all__ = ["run_eval", "get_codecs", "CODECS"]


def __getattr__(name):
    if name == "run_eval":
        from .runner import run_eval

        return run_eval
    if name in ("get_codecs", "CODECS"):
        from . import codecs

        return getattr(codecs, name)
    raise AttributeError(f"module 'adapix.eval' has no attribute {name!r}")
