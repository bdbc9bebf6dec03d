"""Speed, memory and decoder complexity of Adapix, with a serial autoregressive model for contrast.

What is measured (``run_bench``; CLI: ``adapix bench``), per image size:

* ``adapix:<profile>``: wall time of :meth:`adapix.codec.Codec.encode_ex` and
  :meth:`~adapix.codec.Codec.decode_ex` (image array -> ``.apx`` bytes -> image array, so container
  packing and colour conversion are included), median of ``runs`` runs after one warm-up run, in
  this process with ``torch.set_num_threads(threads)``.
* ``adapix:synthesis``: the synthesis transform alone (:meth:`AdapixModel.synthesize`: weight
  generator + inverse gain + ``g_s``) on a ``y_hat`` of the same latent size: the floor that a
  parallel entropy model can approach. Its "decode" column is that time; it has no encode.
* ``mbt2018:q<Q>``: CompressAI's ``mbt2018`` (joint autoregressive + hyperprior, Minnen et al.,
  NeurIPS 2018) with *random* weights at zoo quality Q (default 6: N=192, M=320), after
  ``update(force=True)``; ``compress(x)`` and ``decompress(strings, shape)`` on the same image
  padded to a multiple of 64 (the latent then has the size of Adapix's). Its decoder runs the
  serial raster-scan loop over every latent position, so its time, unlike its bit rate, does not
  depend on training. Skipped with a one-line reason when compressai cannot be imported.
* peak memory (``peak_mem_mb``; ``encode_mem_mb`` / ``decode_mem_mb``): each configuration is run
  once more in a fresh ``python -c`` subprocess (same thread count); after imports, model load and
  input preparation the process's high-water mark is reset where Linux allows it
  (``/proc/self/clear_refs``) and read as the baseline, the operation runs once, and the
  high-water mark minus the baseline is reported in MB (1 MB = 2**20 bytes). The high-water
  mark is ``getrusage(RUSAGE_SELF).ru_maxrss``, read on Linux as ``VmHWM`` (the same counter
  without the parent's peak that ru_maxrss inherits at exec; see :func:`_maxrss_mb`).
* decoder complexity (``kmac_per_pixel``): ``torch.utils.flop_counter.FlopCounterMode`` over one
  full decode (the synthesis call alone for the synthesis row). It counts only convolutions
  (incl. transposed and grouped) and matrix products (mm/addmm/bmm/baddbmm; linear layers),
  not element-wise work (GDN's square root and division, activations, rounding) nor the entropy
  coder; MACs = FLOPs / 2, divided by the pixels of the image (not of its padded size).

Ratios (``compute_ratios``): Adapix decode / synthesis-only decode (how far the entropy decoding
is from the parallel floor) and mbt2018 decode / Adapix decode (fast profile, or the first
profile measured), per size.

compressai is installed WITHOUT its dependencies (``pip install --no-deps compressai==1.2.8``):
its declared requirements include torchvision and torch-geometric, which would pull another
torch build. Its small import-time needs are the ``bench`` extra (``pip install -e '.[bench]'``).
The packages it imports for features the benchmark does not use (torchvision, torch_geometric,
pandas, requests) are replaced by stub modules while compressai is imported: see
:func:`import_compressai`.

Modules: :mod:`.results` (constants, config and result records, size arguments), :mod:`.pictures`,
:mod:`.timing` (timing helpers, Adapix and synthesis-only rows), :mod:`.mbt` (CompressAI mbt2018 and
its import stubs), :mod:`.memory` (peak memory in a subprocess), :mod:`.report` (ratios, table,
JSON, environment), :mod:`.driver` (:func:`run_bench`), :mod:`.large` (``adapix bench --large``:
peak memory and time against image size, file to file, tiled or not; :func:`run_large`).
"""

from __future__ import annotations

import types

from .driver import _Task, run_bench
from .mbt import (_compressai_stubs, _functional_transform, _stub_module, _StubData,
                  _stubbed_missing_modules, _StubTransform, bench_mbt2018, build_mbt2018,
                  compressai_unavailable_reason, import_compressai, mbt_input)
from .memory import (_maxrss_mb, _memory_child, _memory_child_main, _reset_high_water_mark,
                     measure_peak_memory, memory_available)
from .pictures import _value_noise, image_from_file, make_picture, synthetic_photo
from .report import (_fmt, _fmt_mb, _fmt_mem, _fmt_time, _pick_adapix, compute_ratios,
                     environment_info, format_table, report_to_json, write_json)
from .results import (_RESULT_TAG, COMPRESSAI_INSTALL, COMPRESSAI_VERSION, DEFAULT_MBT_QUALITY,
                      DEFAULT_RUNS, DEFAULT_SIZES, DEFAULT_THREADS, MBT_PAD, SYNTHESIS, BenchConfig,
                      BenchReport, Ratios, SpeedResult, parse_size, parse_sizes)
from .timing import (_padded, bench_adapix, bench_synthesis, count_kmac_per_pixel, median_time,
                     synthesis_input, torch_threads)

_COMPRESSAI: tuple[types.ModuleType | None, str | None] | None = None
"""Cache of :func:`import_compressai`, kept in the package namespace (set it to None to retry)."""


__all__ = ["SpeedResult", "Ratios", "BenchConfig", "BenchReport", "parse_size", "parse_sizes",
           "synthetic_photo", "image_from_file", "make_picture", "median_time", "torch_threads",
           "count_kmac_per_pixel", "bench_adapix", "bench_synthesis", "synthesis_input",
           "import_compressai", "compressai_unavailable_reason", "build_mbt2018", "mbt_input",
           "bench_mbt2018", "measure_peak_memory", "memory_available", "compute_ratios",
           "format_table", "report_to_json", "write_json", "environment_info", "run_bench",
           "DEFAULT_SIZES", "DEFAULT_RUNS", "DEFAULT_THREADS", "COMPRESSAI_INSTALL"]
