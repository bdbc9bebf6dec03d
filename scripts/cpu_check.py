"""What this CPU offers for Adapix, and the timings quoted in docs/training.md and the code."""

import time

import torch

from adapix.hardware import bf16_is_fast


def main() -> int:
    """``python scripts/cpu_check.py``: what this CPU offers, and the timings quoted in the docs
    (one 96-channel 5x5 convolution on 8x96x48x48, channels_last, 1 thread, float32 against bf16
    autocast; the first ``torch.optim.Adam`` of the process, which imports torch._dynamo)."""
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16 kernels: {bf16_is_fast()}")
    t0 = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    print(f"first torch.optim.Adam: {time.perf_counter() - t0:.2f} s")
    conv = torch.nn.Conv2d(96, 96, 5, padding=2).to(memory_format=torch.channels_last)
    x = torch.rand(8, 96, 48, 48).contiguous(memory_format=torch.channels_last)
    for name, bf16 in (("float32", False), ("bf16 autocast", True)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            conv(x)
            t0 = time.perf_counter()
            conv(x)
            print(f"conv 96->96 5x5 on 8x96x48x48, {name}: {time.perf_counter() - t0:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
