"""The fixed-point entropy-parameter path gives bit-identical results under any execution order."""

import torch
import torch.nn.functional as F
from torch import nn

from adapix.entropy.fixedpoint import ACT_BITS, FixedPointNet, gelu_lut, to_grid


def _net(seed=0, cin=40, hidden=24, cout=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                         nn.GELU(), nn.ConvTranspose2d(hidden, hidden, 5, 2, 2, 1), nn.GELU(),
                         nn.Conv2d(hidden, cout, 1))


def _input(seed=1, cin=40):
    g = torch.Generator().manual_seed(seed)
    return to_grid(torch.randn(1, cin, 9, 13, generator=g, dtype=torch.float64) * 20)


def test_close_to_float_network():
    net = _net()
    x = _input()
    exact = FixedPointNet(net, gelu_lut())(x)
    ref = net(x.float()).double()
    assert exact.shape == ref.shape
    assert (exact - ref).abs().max() < 0.02 * ref.abs().max()


def test_identical_across_threads_and_mkldnn():
    fx = FixedPointNet(_net(), gelu_lut())
    x = _input()
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = fx(x)
        torch.set_num_threads(2)
        b = fx(x)
        with torch.backends.mkldnn.flags(enabled=False):
            c = fx(x)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_order_of_summation_does_not_matter():
    """A 1x1 conv computed as a matmul summing in reversed channel order gives the same bits."""
    net = nn.Sequential(nn.Conv2d(300, 7, 1))
    torch.manual_seed(3)
    fx = FixedPointNet(net, gelu_lut())
    x = _input(cin=300)
    out = fx(x)
    L = fx.layers[0]
    a = torch.round(torch.ldexp(x, torch.tensor(ACT_BITS)))
    w = L.weight[:, :, 0, 0]
    acc = torch.einsum("oc,bchw->bohw", w.flip(1), a.flip(1)) + L.bias.view(1, -1, 1, 1)
    manual = torch.ldexp(acc, torch.tensor(-(ACT_BITS + L.shift)))
    assert torch.equal(out, manual)


def test_gelu_table_matches_gelu():
    lut = gelu_lut().double() / 2 ** ACT_BITS
    p = torch.linspace(-8, 8, lut.numel(), dtype=torch.float64)
    assert (lut - F.gelu(p)).abs().max() <= 2 ** -(ACT_BITS + 1) + 1e-12
