"""Tests of adapix.train: run configuration parsing and exact resumption of training."""

from __future__ import annotations

import dataclasses
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adapix.config import TINY, ModelConfig
from adapix.train.config import RunConfig, TrainConfig, load_run_config
from adapix.model import regrid_gains
from adapix.train.loop import (Trainer, lr_at, new_channel_rate_weight, position_range,
                               rate_scale_at, rd_loss, sample_positions)
from adapix.widen import latent_index, new_latent_mask

TOML = """
[model]
N = 16
M = 24
Nh = 16
ctx_hidden = 24
syntax_dim = 8
postfilter_channels = 8
lambdas = [0.001, 0.01, 0.1]

[train]
data = "some/folder"
steps = 10
lr = 1e-3
compile = false
val_qualities = [20, 80]
model_id = "from-toml"
"""


# ---- configuration ----------------------------------------------------------------------------

def test_defaults():
    run = load_run_config(None, [])
    assert isinstance(run, RunConfig)
    assert run.model == ModelConfig() and run.train == TrainConfig()


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    run = load_run_config(str(path))
    assert run.model == ModelConfig(N=16, M=24, Nh=16, ctx_hidden=24, syntax_dim=8,
                                    postfilter_channels=8, lambdas=(0.001, 0.01, 0.1))
    t = run.train
    assert (t.data, t.steps, t.lr, t.compile, t.model_id) == ("some/folder", 10, 1e-3, False,
                                                              "from-toml")
    assert t.val_qualities == (20.0, 80.0)

    run = load_run_config(str(path), ["train.steps=7", "model.M=32", "lr=0.002",
                                      "train.bf16=false", "train.compile=yes",
                                      "model.lambdas=0.01,0.02", "train.out=x=y"])
    assert run.model.M == 32 and run.model.N == 16  # file values kept, override applied
    assert run.model.lambdas == (0.01, 0.02)
    assert run.train.steps == 7 and isinstance(run.train.steps, int)
    assert run.train.lr == 0.002  # a bare key goes to [train]
    assert run.train.bf16 is False and run.train.compile is True
    assert run.train.out == "x=y"  # only the first '=' separates key and value


@pytest.mark.parametrize("overrides,text", [
    (["train.nope=1"], None),
    (["model.nope=1"], None),
    (["nope=1"], None),
    (["train.steps"], None),
    (["train.steps=many"], None),
    (["train.bf16=maybe"], None),
    (["train.stage=finetune"], None),
    (["train.t_power=0"], None),
    (["model.analysis_blocks=-1"], None),
    (["model.synthesis_blocks=1.5"], None),
    (["model.synthesis_head=-8"], None),
    (["train.stage=head"], None),  # there is no head to train (model.synthesis_head = 0)
    (["train.t_power=-1"], None),
    (["train.crop=96"], None),  # not a multiple of 64: the first forward pass would fail
    (["train.crop=0"], None),
    (["train.batch=0"], None),
    (["train.rate_ramp=-5"], None),
    (["train.rate_ramp=100", "train.rate_ramp_start=1.5"], None),
    (["train.rate_ramp_start=-0.1"], None),
    ([], "[optim]\nlr = 1.0\n"),
    ([], "[train]\nunknown_key = 3\n"),
    ([], "[model]\nwidth = 3\n"),
])
def test_unknown_keys_and_bad_values_are_rejected(tmp_path, overrides, text):
    path = None
    if text is not None:
        path = tmp_path / "bad.toml"
        path.write_text(text)
    with pytest.raises(ValueError):
        load_run_config(str(path) if path else None, overrides)


def test_lr_schedule():
    cfg = TrainConfig(lr=1e-3, warmup=10, steps=100, decay_steps=50, lr_floor=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 50) == pytest.approx(1e-3)
    assert lr_at(cfg, 100) == pytest.approx(1e-4)
    assert all(lr_at(cfg, s) >= lr_at(cfg, s + 1) for s in range(10, 100))


def test_rate_ramp_schedule():
    """The autoencoder-first curriculum: the rate's weight rises linearly from rate_ramp_start
    to 1 over rate_ramp steps, then stays at 1; off (always 1) by default."""
    assert all(rate_scale_at(TrainConfig(), s) == 1.0 for s in (0, 1, 10_000))
    cfg = TrainConfig(rate_ramp=100, rate_ramp_start=0.2)
    assert rate_scale_at(cfg, 0) == pytest.approx(0.2)
    assert rate_scale_at(cfg, 50) == pytest.approx(0.6)
    assert rate_scale_at(cfg, 100) == rate_scale_at(cfg, 5000) == 1.0
    assert all(rate_scale_at(cfg, s) < rate_scale_at(cfg, s + 1) for s in range(100))


def test_quality_positions_uniform_by_default_and_tilted_by_t_power():
    def draw(step=0, **kw):
        gen = torch.Generator().manual_seed(0)
        return sample_positions(TrainConfig(**kw), 6, 20000, gen, step)

    uniform = draw()
    assert 0 <= float(uniform.min()) and float(uniform.max()) <= 5
    assert float(uniform.mean()) == pytest.approx(2.5, abs=0.05)
    tilted = draw(t_power=0.6)
    assert 0 <= float(tilted.min()) and float(tilted.max()) <= 5
    # s = u ** 0.6: P(s > 1/2) = 1 - 0.5 ** (1 / 0.6) = 0.685, and the same draws, only bent
    assert float((tilted > 2.5).float().mean()) == pytest.approx(0.685, abs=0.02)
    assert torch.allclose(tilted, 5 * (uniform / 5) ** 0.6)
    ranged = draw(t_min=1.0, t_max=2.0, t_power=2.0)
    assert 1 <= float(ranged.min()) and float(ranged.max()) <= 2
    assert float(ranged.mean()) == pytest.approx(1 + 1 / 3, abs=0.02)  # E[u^2] = 1/3


def test_lambda_curriculum_widens_the_range_of_positions_from_its_center():
    def draw(step, **kw):
        gen = torch.Generator().manual_seed(0)
        return sample_positions(TrainConfig(**kw), 6, 5000, gen, step)

    uniform = draw(0)
    # the middle of [0, 5] at step 0, half of the range at step 50, all of it from step 100 on
    assert torch.all(draw(0, t_ramp=100) == 2.5)
    half = draw(50, t_ramp=100)
    assert position_range(TrainConfig(t_ramp=100), 6, 50) == (1.25, 3.75)
    assert torch.allclose(half, 1.25 + 2.5 * uniform / 5)  # the same uniform draws, squeezed
    assert torch.equal(draw(100, t_ramp=100), uniform) and torch.equal(draw(999, t_ramp=100), uniform)
    # a center at the low-quality end widens upward only; t_min and t_max still bound the range
    low = TrainConfig(t_ramp=10, t_ramp_center=1.0, t_min=1.0, t_max=4.0)
    assert [position_range(low, 6, s) for s in (0, 5, 10)] == [(1.0, 1.0), (1.0, 2.5), (1.0, 4.0)]
    assert 1.0 <= float(draw(5, t_ramp=10, t_ramp_center=1.0, t_min=1.0, t_max=4.0).max()) <= 2.5


@pytest.mark.parametrize("override, message", [
    ("train.t_ramp=-5", "t_ramp must be >= 0"),
    ("train.t_ramp_center=7", "t_ramp_center must be"),
])
def test_lambda_curriculum_settings_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        load_run_config(None, ["train.t_ramp=100", override])
    # the last anchor of the default model's 6 is position 5: a center there is fine
    assert load_run_config(None, ["train.t_ramp=100", "train.t_ramp_center=5"]).train.t_ramp == 100


# ---- training and exact resumption ------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    for i in range(3):
        img = np.stack([xx * 2 + 10 * i, yy * 2, (xx + yy) + 20 * i], axis=-1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"img{i}.png")
    return d


def run_config(data: Path, out: Path, steps: int):
    return load_run_config(None, [
        f"model.N={TINY.N}", f"model.M={TINY.M}", f"model.Nh={TINY.Nh}",
        f"model.scales={TINY.scales}", f"model.groups={TINY.groups}",
        f"model.ctx_hidden={TINY.ctx_hidden}", f"model.syntax_dim={TINY.syntax_dim}",
        f"model.postfilter_channels={TINY.postfilter_channels}",
        f"train.data={data}", f"train.out={out}", "train.crop=64", "train.batch=2",
        f"train.steps={steps}", "train.compile=false", "train.bf16=false", "train.val_every=0",
        "train.val_holdout=1", "train.seed=3", "train.warmup=2",
        # no final cosine decay: its start depends on train.steps, so a 3-step run and the first
        # 3 steps of a 5-step run would use different learning rates
        "train.decay_steps=0",
    ])


def init_run(data: Path, tmp_path: Path, reference: dict, name: str, steps: int,
             stage: str = "main", **model_changes) -> tuple[RunConfig, RunConfig, Path]:
    """(a run from the 5-step reference checkpoint by ``train.init`` into a model that differs
    by ``model_changes``, in ``stage``; the plain run config; the reference's path)."""
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data, tmp_path / name, steps)
    run = RunConfig(model=dataclasses.replace(base.model, **model_changes),
                    train=dataclasses.replace(base.train, init=str(src), stage=stage))
    return run, base, src


def assert_init_refused(tmp_path: Path, base: RunConfig, name: str, model, match: str) -> None:
    """train.init from the checkpoint of run ``name`` into ``model`` is refused with ``match``."""
    back = tmp_path / f"{name}.pt"
    torch.save(checkpoint(tmp_path / name), back)
    run = RunConfig(model=model, train=dataclasses.replace(base.train, init=str(back),
                                                           out=str(tmp_path / f"{name}-again")))
    with pytest.raises(ValueError, match=match):
        Trainer(run, resume=False, progress=False)


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def assert_same_checkpoint(ca: dict, cb: dict) -> None:
    assert ca["step"] == cb["step"]
    assert_same_state(ca["model"], cb["model"])
    sa, sb = ca["opt"]["state"], cb["opt"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name])), \
                f"optimizer state {k}.{name} differs"
    assert torch.equal(ca["gen_rng"], cb["gen_rng"])
    assert torch.equal(ca["torch_rng"], cb["torch_rng"])


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict:
    """Checkpoint of an uninterrupted 5-step run."""
    out = tmp_path_factory.mktemp("run_ref")
    trainer = Trainer(run_config(data_dir, out, 5), resume=False, progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    exported = trainer.fit()
    assert trainer.step == 5
    assert exported is not None and Path(exported).is_file()  # exported at the end
    ck = checkpoint(out)
    assert ck["step"] == 5
    assert any(not torch.equal(v, ck["model"][k]) for k, v in initial.items()), \
        "training changed nothing"
    return ck


def test_three_steps_then_resume_to_five_equals_five_steps(data_dir, tmp_path, reference,
                                                           capsys):
    out = tmp_path / "run"
    first = Trainer(run_config(data_dir, out, 3), resume=False, progress=False)
    first.fit()
    assert first.step == 3 and checkpoint(out)["step"] == 3
    second = Trainer(run_config(data_dir, out, 5), resume=True, progress=False)
    assert second.step == 3
    assert "resumed" in capsys.readouterr().out
    second.fit()
    assert second.step == 5
    assert_same_checkpoint(checkpoint(out), reference)
    assert_same_state(second.model.state_dict(), reference["model"])


def test_interrupt_by_sigint_then_resume_equals_uninterrupted(data_dir, tmp_path, reference):
    """Ctrl-C during a 5-step run stops after the current step with a checkpoint; running again
    continues exactly."""
    out = tmp_path / "run"
    trainer = Trainer(run_config(data_dir, out, 5), resume=False, progress=False)
    orig_step = trainer.opt.step
    calls = {"n": 0, "handled": None}

    def step_then_interrupt(*a, **k):
        r = orig_step(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            calls["handled"] = signal.getsignal(signal.SIGINT) == trainer._on_signal
            if calls["handled"]:
                signal.raise_signal(signal.SIGINT)
            else:
                trainer.stop = True
        return r

    trainer.opt.step = step_then_interrupt
    assert trainer.fit() is None  # stopped early: no export
    assert calls["handled"], "SIGINT handler not installed during fit"
    assert trainer.step == 3 and checkpoint(out)["step"] == 3
    assert not (out / "weights.safetensors").exists()
    resumed = Trainer(run_config(data_dir, out, 5), resume=True, progress=False)
    resumed.fit()
    assert_same_checkpoint(checkpoint(out), reference)


def test_rate_ramp_scales_the_rate_term_of_the_training_loss(data_dir, tmp_path):
    """rd_loss's rate_scale weighs the rate term alone, and with train.rate_ramp the trainer's
    loss at step 0 is rate_ramp_start * bpp + distortion (same batch, qualities and noise)."""
    run = run_config(data_dir, tmp_path / "run", 5)
    ramped = dataclasses.replace(run, train=dataclasses.replace(run.train, rate_ramp=10,
                                                                rate_ramp_start=0.25))
    trainer = Trainer(ramped, resume=False, progress=False)
    x = torch.rand(2, 3, 64, 64)
    trainer.gen.manual_seed(7)
    t = sample_positions(trainer.cfg, len(ramped.model.lambdas), 2, trainer.gen, 0)

    def loss(scale: float) -> float:
        torch.manual_seed(0)  # the same training noise each time
        value, stats = rd_loss(trainer.fwd, trainer.model, x, t, False, rate_scale=scale)
        assert stats["bpp"] > 0.1  # reported unscaled
        return float(value)

    full, distortion = loss(1.0), loss(0.0)
    assert full > distortion
    assert loss(0.25) == pytest.approx(distortion + 0.25 * (full - distortion), rel=1e-5)
    trainer.gen.manual_seed(7)
    torch.manual_seed(0)
    assert float(trainer.loss(x)[0]) == pytest.approx(loss(0.25), rel=1e-5)


def test_a_non_finite_step_is_dropped_and_a_finite_one_is_timed(data_dir, tmp_path):
    """Trainer.train_step (the step of fit and of scripts/step_profile.py): a batch that makes the
    loss NaN changes no weight and no step count; a good batch moves the weights, counts one step
    and adds the seconds of each part to ``times``."""
    trainer = Trainer(run_config(data_dir, tmp_path / "run", 5), resume=False, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    times: dict[str, float] = {}
    bad = torch.full((2, 3, 64, 64), float("nan"))
    assert trainer.train_step(bad, 1e-3, times) is None
    assert trainer.step == 0 and trainer.skipped == 1 and times == {}
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())
    loss, stats = trainer.train_step(torch.rand(2, 3, 64, 64), 1e-3, times)
    assert torch.isfinite(loss) and stats["bpp"] > 0
    assert trainer.step == 1 and trainer.opt.param_groups[0]["lr"] == 1e-3
    assert set(times) == {"forward", "backward", "clip", "optimiser"}
    assert all(v > 0 for v in times.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_resume_with_another_model_config_is_refused(data_dir, tmp_path):
    out = tmp_path / "run"
    Trainer(run_config(data_dir, out, 1), resume=False, progress=False).fit()
    other = run_config(data_dir, out, 2)
    other = RunConfig(model=dataclasses.replace(other.model, M=32), train=other.train)
    with pytest.raises(ValueError):
        Trainer(other, resume=True, progress=False)


def test_init_from_a_model_with_fewer_anchors_regrids_the_gains(data_dir, tmp_path, reference):
    """train.init from the 5-step run (six anchors) into a model with two more anchors below: the
    gains at the old anchors are the same, and the new rows continue the old trend in log lambda."""
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "wide", 1)
    old = base.model.lambdas
    wide = (old[0] / 9, old[0] / 3) + old
    run = RunConfig(model=dataclasses.replace(base.model, lambdas=wide),
                    train=dataclasses.replace(base.train, init=str(src)))
    trainer = Trainer(run, resume=False, progress=False)
    for key in ("log_gain", "log_inv_gain"):
        got, before = getattr(trainer.model, key).detach(), reference["model"][key]
        assert got.shape == (len(wide), before.shape[1])
        assert torch.equal(got[2:], before)
        slope = (before[1] - before[0]) / math.log(old[1] / old[0])  # per unit of log lambda
        assert torch.allclose(got[1], before[0] - slope * math.log(3), atol=1e-5)
        assert torch.allclose(got[0], before[0] - slope * math.log(9), atol=1e-5)
    rest = {k: v for k, v in trainer.model.state_dict().items() if "gain" not in k}
    assert_same_state(rest, {k: reference["model"][k] for k in rest})  # the rest is the source's


def test_init_from_a_narrower_model_widens_it_and_trains(data_dir, tmp_path, reference, capsys):
    """train.init from the 5-step run into a model with 8 more channels N and 8 more latent
    channels M: the trained block is the source's (the latent's channels in their groups), the
    new channels' outgoing weights are zero, and training then runs."""
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "widened", 2)
    wide_cfg = dataclasses.replace(base.model, N=TINY.N + 8, M=TINY.M + 8)
    run = RunConfig(model=wide_cfg, train=dataclasses.replace(base.train, init=str(src)))
    trainer = Trainer(run, resume=False, progress=False)
    assert ("widened the model from N=16, M=24, Ns=16 to N=24, M=32, Ns=24"
            in capsys.readouterr().out)
    state = trainer.model.state_dict()
    first = state["g_a.net.0.weight"]
    assert torch.equal(first[:TINY.N], reference["model"]["g_a.net.0.weight"])
    assert torch.equal(first[TINY.N:], torch.zeros_like(first[TINY.N:]))
    y = latent_index(TINY, wide_cfg)
    assert torch.equal(state["log_gain"][:, y], reference["model"]["log_gain"])
    assert torch.equal(state["g_a.net.6.weight"][y, :TINY.N],
                       reference["model"]["g_a.net.6.weight"])
    trainer.fit()
    trained = trainer.model.state_dict()["g_a.net.0.weight"][TINY.N:]
    assert trainer.step == 2 and not torch.equal(trained, torch.zeros_like(trained))
    for name, value in (("N", TINY.N - 8), ("M", TINY.M - 8)):
        narrower = RunConfig(model=dataclasses.replace(base.model, **{name: value}),
                             train=dataclasses.replace(base.train, init=str(src)))
        with pytest.raises(ValueError, match=f"{name} \\(.* > .*\\); only .*model.M, "
                                             "model.synthesis_channels \\(Ns\\), "
                                             "model.analysis_blocks or model.synthesis_blocks "
                                             "may grow"):
            Trainer(narrower, resume=False, progress=False)


def test_new_channels_rate_weight_ramps_from_zero(tmp_path):
    """new_channel_rate_weight: 1 on the old channels, step / ramp on those added by widening M,
    None once the ramp is over or when none is set; the settings are checked together."""
    wide = dataclasses.replace(TINY, M=TINY.M + 8)
    cfg = TrainConfig(new_rate_from_m=TINY.M, new_rate_ramp=100)
    new = new_latent_mask(TINY, wide)
    for step, share in ((0, 0.0), (25, 0.25), (99, 0.99)):
        w = new_channel_rate_weight(wide, cfg, step)
        assert torch.equal(w[~new], torch.ones(TINY.M))
        assert torch.allclose(w[new], torch.full((8,), share))
    assert new_channel_rate_weight(wide, cfg, 100) is None
    assert new_channel_rate_weight(wide, TrainConfig(), 0) is None
    m = f"model.M={wide.M}"
    for bad in (["train.new_rate_ramp=100"], ["train.new_rate_from_m=24"],
                [m, "train.new_rate_from_m=23", "train.new_rate_ramp=10"],
                [m, f"train.new_rate_from_m={wide.M}", "train.new_rate_ramp=10"],
                ["train.init_new_sigma=-1"], ["train.init_new_latent=copy"]):
        with pytest.raises(ValueError, match="new_rate|init_new_"):
            load_run_config(None, [f"model.groups={TINY.groups}", *bad])


def test_init_widening_m_with_a_rate_ramp_trains(data_dir, tmp_path, reference):
    """train.init into 8 more latent channels, active, with init_new_sigma and a rate ramp: the
    new channels start non-zero with that sigma, and the weighted rate lowers the loss."""
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "ramp", 2)
    wide_cfg = dataclasses.replace(base.model, M=TINY.M + 8)
    train = dataclasses.replace(base.train, init=str(src), init_new_sigma=1.5,
                                init_new_latent="active", new_rate_from_m=TINY.M,
                                new_rate_ramp=1000)
    trainer = Trainer(RunConfig(model=wide_cfg, train=train), resume=False, progress=False)
    Mg_new = wide_cfg.M // wide_cfg.groups
    bias = trainer.model.msp.coarse[0].net[-1].bias.detach()
    assert torch.allclose(bias[2 * Mg_new - 4:], torch.full((4,), math.log(1.5)))
    assert trainer.model.g_a.net[6].weight[Mg_new - 4:Mg_new].abs().sum() > 0
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(0)
    ramped, _ = trainer.loss(x)
    trainer.step = 1000  # the ramp is over: full rate
    torch.manual_seed(0)
    full, _ = trainer.loss(x)
    assert float(ramped) < float(full)
    trainer.step = 0
    trainer.fit()
    assert trainer.step == 2


def test_init_turns_on_the_rate_modulation_at_the_identity(data_dir, tmp_path, reference,
                                                           capsys):
    """train.init from the 5-step run (no modulation) into a model with it: the tables start at
    zero (the identity), the rest is the source's, and training moves the tables; the reverse
    is refused."""
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "rm", 2)
    run = RunConfig(model=dataclasses.replace(base.model, rate_modulation=True),
                    train=dataclasses.replace(base.train, init=str(src)))
    trainer = Trainer(run, resume=False, progress=False)
    assert "added the rate modulation" in capsys.readouterr().out
    state = trainer.model.state_dict()
    tables = {k: v for k, v in state.items() if k.startswith("rate_mod.")}
    assert len(tables) == 4 and all(torch.equal(v, torch.zeros_like(v)) for v in tables.values())
    assert_same_state({k: v for k, v in state.items() if k not in tables}, reference["model"])
    trainer.fit()
    assert any(v.abs().sum() > 0 for v in (trainer.model.rate_mod.a_shift,
                                           trainer.model.rate_mod.s_log_scale))
    assert_init_refused(tmp_path, base, "rm", base.model, "rate_modulation")


def test_resume_of_a_checkpoint_older_than_a_config_field(data_dir, tmp_path, reference):
    """A checkpoint written before a model-config field existed (here rate_modulation) resumes
    with that field's default."""
    out = tmp_path / "old"
    out.mkdir()
    old = dict(reference)
    old["model_config"] = {k: v for k, v in reference["model_config"].items()
                           if k != "rate_modulation"}
    torch.save(old, out / "checkpoint.pt")
    trainer = Trainer(run_config(data_dir, out, 6), resume=True, progress=False)
    assert trainer.step == 5
    assert_same_state(trainer.model.state_dict(), reference["model"])


def test_init_from_a_model_of_another_size_is_refused(data_dir, tmp_path, reference):
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "other", 1)
    run = RunConfig(model=dataclasses.replace(base.model, Nh=32),
                    train=dataclasses.replace(base.train, init=str(src)))
    with pytest.raises(ValueError, match="differs in Nh"):
        Trainer(run, resume=False, progress=False)


def test_regrid_gains_keeps_the_anchors_and_interpolates_between():
    table = torch.tensor([[0.0, 1.0], [1.0, 3.0], [3.0, 4.0]])
    lams = (0.01, 0.1, 1.0)
    assert torch.equal(regrid_gains(table, lams, lams), table)
    mid = regrid_gains(table, lams, (math.sqrt(0.1),))  # halfway between anchors 1 and 2 in log
    assert torch.allclose(mid, torch.tensor([[2.0, 3.5]]))
    above = regrid_gains(table, lams, (10.0,))
    assert torch.allclose(above, torch.tensor([[5.0, 5.0]]))
    with pytest.raises(ValueError):
        regrid_gains(table, lams[:2], lams)


@pytest.mark.parametrize("stage", ["main", "postfilter"])
def test_validation_uses_the_post_filter_in_its_stage(stage, monkeypatch):
    """Validation codes real bitstreams; in stage "postfilter" it decodes with the post-filter it
    trains (else its numbers could not show what the stage buys)."""
    from adapix.model import AdapixModel
    from adapix.train.loop import validate

    torch.manual_seed(0)
    model = AdapixModel(TINY)
    calls = []
    real = model.postfilter.forward
    monkeypatch.setattr(model.postfilter, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    cfg = TrainConfig(stage=stage, val_qualities=(50.0,))
    (r,) = validate(model, [img], cfg, step=7)
    assert r.step == 7 and r.bpp > 0 and np.isfinite(r.psnr)
    assert bool(calls) is (stage == "postfilter")


def test_encoder_stage_from_a_model_without_blocks_trains_only_the_encoder(data_dir, tmp_path,
                                                                           reference, capsys):
    """train.init from the 5-step run into a model with model.analysis_blocks = 1 and stage
    "encoder": the blocks start at the identity (the same latent), training moves only the
    encoder's parameters (g_a with its blocks, h_a, the model stream's encoder, the gains) and
    leaves every parameter the decoder reads bit for bit the same; fewer blocks are refused."""
    run, base, _ = init_run(data_dir, tmp_path, reference, "enc", 2, "encoder", analysis_blocks=1)
    trainer = Trainer(run, resume=False, progress=False)
    assert "added g_a's residual blocks (model.analysis_blocks 0 -> 1" in capsys.readouterr().out
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    blocks = [k for k in state if k.startswith("g_a.blocks.")]
    assert len(blocks) == 3 * 4  # three places, two convolutions with a bias each
    assert_same_state({k: v for k, v in state.items() if k not in blocks}, reference["model"])
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k for k in state if not torch.equal(state[k], after[k])}
    encoder = ("g_a.", "h_a.", "syntax.", "log_gain")
    assert moved and all(k.startswith(encoder) for k in moved), sorted(moved)
    assert any(k in moved for k in blocks) and any(k.startswith("h_a.") for k in moved)
    ck = checkpoint(tmp_path / "enc")
    assert ck["postfilter_trained"] is False  # the source's post-filter was never trained
    assert_init_refused(tmp_path, base, "enc", base.model, r"analysis_blocks \(1 > 0\)")


def test_head_stage_adds_the_full_resolution_head_and_trains_only_it(data_dir, tmp_path,
                                                                       reference, capsys):
    """train.init from the 5-step run into a model with model.synthesis_head = 8 and stage
    "head": the head starts at zero (every other tensor as in the source), only the head's
    parameters move, and a head of another width from a headed source is refused."""
    run, base, _ = init_run(data_dir, tmp_path, reference, "head", 2, "head", synthesis_head=8)
    trainer = Trainer(run, resume=False, progress=False)
    assert "added g_s's full-resolution head (model.synthesis_head 0 -> 8" in \
        capsys.readouterr().out
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    head = [k for k in state if k.startswith("g_s.head.")]
    assert len(head) == 6 and not state["g_s.head.out.weight"].any()
    assert_same_state({k: v for k, v in state.items() if k not in head}, reference["model"])
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k for k in state if not torch.equal(state[k], after[k])}
    assert moved and moved <= set(head), sorted(moved)
    assert_init_refused(tmp_path, base, "head", dataclasses.replace(base.model, synthesis_head=16),
                        "synthesis_head")


def test_synthesis_stage_widens_g_s_alone_and_trains_only_the_synthesis(data_dir, tmp_path,
                                                                       reference, capsys):
    """train.init from the 5-step run into a model with model.synthesis_channels = N + 8 and
    stage "synthesis": g_s is widened (g_a keeps N), training moves only g_s and the generator
    of its per-image weights (so every file keeps its bits: the encoder and the entropy models
    are the source's, bit for bit), and a narrower g_s is refused."""
    wide = TINY.N + 8
    run, base, _ = init_run(data_dir, tmp_path, reference, "synth", 2, "synthesis",
                            synthesis_channels=wide)
    trainer = Trainer(run, resume=False, progress=False)
    assert (f"widened the model from N=16, M=24, Ns=16 to N=16, M=24, Ns={wide}"
            in capsys.readouterr().out)
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert state["g_s.body.0.weight"].shape[1] == wide
    assert state["g_a.net.0.weight"].shape[0] == TINY.N
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k for k in state if not torch.equal(state[k], after[k])}
    synthesis = ("g_s.", "generator.hidden.", "generator.synth.")
    assert moved and all(k.startswith(synthesis) for k in moved), sorted(moved)
    assert "g_s.body.0.weight" in moved
    unchanged = {k: v for k, v in after.items() if not k.startswith(("g_s.", "generator."))}
    assert_same_state(unchanged, {k: reference["model"][k] for k in unchanged})
    assert_init_refused(tmp_path, base, "synth", base.model, rf"Ns \({wide} > {TINY.N}\)")


def test_analysis_blocks_cannot_grow_with_n_or_m(data_dir, tmp_path, reference):
    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "both", 1)
    run = RunConfig(model=dataclasses.replace(base.model, analysis_blocks=1, N=TINY.N + 8),
                    train=dataclasses.replace(base.train, init=str(src)))
    with pytest.raises(ValueError, match="analysis_blocks together with N, M or Ns"):
        Trainer(run, resume=False, progress=False)


def test_main_stage_adds_synthesis_blocks_at_the_identity(data_dir, tmp_path, reference,
                                                          capsys):
    """train.init from the 5-step run into a model with model.synthesis_blocks = 1: the new
    blocks start at the identity (every other tensor as in the source), the main stage trains
    them, and a model with fewer blocks or wider at the same time is refused."""
    run, base, src = init_run(data_dir, tmp_path, reference, "syn", 2, synthesis_blocks=1)
    trainer = Trainer(run, resume=False, progress=False)
    assert "added g_s's residual blocks (model.synthesis_blocks 0 -> 1" in capsys.readouterr().out
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    blocks = [k for k in state if k.startswith("g_s.blocks.")]
    assert len(blocks) == 3 * 4
    assert all(not state[k].any() for k in blocks if ".c2." in k)
    assert_same_state({k: v for k, v in state.items() if k not in blocks}, reference["model"])
    trainer.fit()
    after = trainer.model.state_dict()
    assert any(not torch.equal(state[k], after[k]) for k in blocks)
    assert_init_refused(tmp_path, base, "syn", base.model, r"synthesis_blocks \(1 > 0\)")
    wider = RunConfig(model=dataclasses.replace(base.model, synthesis_blocks=1, M=TINY.M + 8),
                      train=dataclasses.replace(base.train, init=str(src),
                                                out=str(tmp_path / "wider")))
    with pytest.raises(ValueError, match="synthesis_blocks together with N, M or Ns"):
        Trainer(wider, resume=False, progress=False)


def test_encoder_stage_keeps_the_post_filter_it_starts_from(data_dir, tmp_path, reference):
    """The exported weights of a post-filter stage mark the post-filter trained; an encoder stage
    started from them keeps that mark (in its checkpoint, its export and on resume), a main
    stage does not (it changes the decoder the filter was trained on)."""
    from adapix.weights import load_weights

    src = tmp_path / "src.pt"
    torch.save(reference, src)
    base = run_config(data_dir, tmp_path / "pf", 1)
    post = Trainer(RunConfig(model=base.model, train=dataclasses.replace(
        base.train, init=str(src), stage="postfilter")), resume=False, progress=False)
    weights = post.fit()
    assert load_weights(weights).postfilter_trained
    for stage, kept in (("encoder", True), ("main", False)):
        out = tmp_path / stage
        run = RunConfig(model=base.model, train=dataclasses.replace(
            base.train, init=str(weights), stage=stage, out=str(out)))
        assert load_weights(Trainer(run, resume=False, progress=False).fit()
                            ).postfilter_trained is kept
        assert checkpoint(out)["postfilter_trained"] is kept
        run2 = RunConfig(model=base.model, train=dataclasses.replace(run.train, steps=2))
        assert Trainer(run2, resume=True, progress=False).postfilter_trained is kept


def test_trainer_draws_its_qualities_from_the_curriculum_range_of_its_step(data_dir, tmp_path,
                                                                           monkeypatch):
    run = run_config(data_dir, tmp_path / "run", 5)
    ramped = dataclasses.replace(run, train=dataclasses.replace(run.train, t_ramp=10,
                                                                t_ramp_center=1.0))
    trainer = Trainer(ramped, resume=False, progress=False)
    seen = []
    monkeypatch.setattr("adapix.train.loop.rd_loss", lambda fwd, model, x, t, *a, **k: seen.append(t))
    x = torch.rand(4, 3, 64, 64)
    trainer.loss(x)
    trainer.step = 5
    trainer.loss(x)
    lo, hi = position_range(trainer.cfg, len(ramped.model.lambdas), 5)
    assert torch.all(seen[0] == 1.0)
    assert hi > lo and torch.all((seen[1] >= lo) & (seen[1] <= hi))
