"""What an encoder profile asks for: gradient phases (:class:`Phase`), the greedy rounding search
(:class:`GreedySearch`), and both together (:class:`Preset`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

RATE_MODES = ("ste", "noise", "sga")
PRECISIONS = ("auto", "bf16", "fp32", "fp32cl")  # of the proxy synthesis, see ProxySynthesis
RANDOM_SEED = 0  # seed of the random relaxations (noise, SGA) during one optimisation
LATENT_NAMES = ("y", "z", "s")
FINETUNE_MODULES = ("g_a", "h_a", "syntax")  # the encoder-side modules (AdapixModel attributes)
SEARCH_ORDERS = ("msp", "reverse")  # of the MSP steps in a greedy pass
# the Preset fields that only matter where the encoder fine-tuning runs (see Preset.at)
_FINETUNE_SETTINGS = ("finetune_iters", "finetune_lr", "finetune_share", "finetune_modules",
                      "finetune_lr_final", "finetune_eval_every")


def cosine_lr(lr: float, final: float, p: float) -> float:
    """Cosine annealing from ``lr`` (progress p = 0) to ``lr * final`` (p >= 1)."""
    c = 0.5 * (1 + math.cos(math.pi * min(max(p, 0.0), 1.0)))
    return lr * (final + (1 - final) * c)


# ---- presets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One gradient phase of latent optimisation (Adam on the continuous latents).

    * ``rate_mode``: how the rounding is relaxed: ``"ste"`` (rate of the actually rounded
      values, straight-through gradient), ``"noise"`` (additive U(-1/2, 1/2) for the rate, as in
      training) or ``"sga"`` (stochastic Gumbel annealing, temperature ``tau[0] -> tau[1]``,
      exponential schedule).
    * ``optimize``: which latents move, a subset of ``("y", "z", "s")``.
    * learning rate: cosine-annealed from ``lr`` to ``lr * lr_final``.
    * ``eval_every``: the true cost is measured every that many iterations (and at the end).
      Each measurement codes the image for real (about the cost of three proxy iterations).
    * ``precision`` of the proxy's synthesis (:class:`adapix.optimize.proxy.ProxySynthesis`):
      ``"auto"`` (bf16 where the CPU has native bf16 kernels, else fp32cl), ``"bf16"``,
      ``"fp32"`` (the model's own synthesis) or ``"fp32cl"`` (float32, channels_last).
    * ``min_lambda``: the phase runs only for images coded at that rate-distortion trade-off
      lambda or above (:meth:`runs_at`; lambda of the quality, :meth:`AdapixModel.lam`, so the
      threshold means the same for any model's quality scale); below it the phase is skipped
      and its share of a time budget goes to what follows (the greedy search). Gradient steps
      on the latents paid at high qualities only, where the search gained less
      (docs/ablations.md, session 6). ``max_lambda``: likewise, only below that lambda.

    The schedules (learning rate, SGA temperature) run on the phase's *progress* p in [0, 1]:
    i / (iters - 1), or, under a time budget, the fraction of the phase's share of the time
    already spent, whichever is larger; so a phase cut short by the budget still ends annealed.
    """

    name: str
    iters: int
    lr: float
    rate_mode: str = "ste"
    optimize: tuple[str, ...] = LATENT_NAMES
    lr_final: float = 0.1
    tau: tuple[float, float] = (0.5, 0.05)
    eval_every: int = 25
    precision: str = "auto"
    min_lambda: float = 0.0
    max_lambda: float = math.inf

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_lambda and math.isfinite(self.min_lambda)):
            raise ValueError(f"min_lambda must be a finite number >= 0, got {self.min_lambda!r}")
        if not self.max_lambda > self.min_lambda:
            raise ValueError(f"max_lambda must be > min_lambda, got {self.max_lambda!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {RATE_MODES}, got {self.rate_mode!r}")
        bad = set(self.optimize) - set(LATENT_NAMES)
        if bad or not self.optimize:
            raise ValueError(f"optimize must be a non-empty subset of {LATENT_NAMES}, got "
                             f"{self.optimize!r}")
        if self.iters < 0 or self.lr <= 0 or self.eval_every < 1:
            raise ValueError("iters must be >= 0, lr > 0 and eval_every >= 1")

    def runs_at(self, lam: float) -> bool:
        """Whether the phase runs for an image coded at trade-off ``lam`` (lambda)."""
        return self.min_lambda * (1 - 1e-9) <= lam < self.max_lambda * (1 - 1e-9)

    def progress(self, i: int) -> float:
        """Progress in [0, 1] of iteration i by the iteration count alone."""
        return 1.0 if self.iters <= 1 else min(1.0, i / (self.iters - 1))

    def lr_at(self, i: int) -> float:
        """Cosine annealing of the learning rate over the phase."""
        if self.iters <= 1:
            return self.lr
        return self.lr_at_progress(self.progress(i))

    def lr_at_progress(self, p: float) -> float:
        return cosine_lr(self.lr, self.lr_final, p)

    def tau_at(self, i: int) -> float:
        """SGA temperature: exponential from tau[0] to tau[1]."""
        return self.tau_at_progress(self.progress(i))

    def tau_at_progress(self, p: float) -> float:
        a = min(max(p, 0.0), 1.0)
        return self.tau[0] * (self.tau[1] / self.tau[0]) ** a


@dataclass(frozen=True)
class GreedySearch:
    """Greedy search over the rounding decisions of y (after the gradient phases).

    In MSP step order, the elements of a step whose residual ``y - mu`` lies within
    ``threshold`` of a rounding boundary (distance in quantisation steps, at most ``fraction`` of
    the step's elements, nearest first) are candidates. A first-order screen keeps those whose
    flip is predicted to lower the cost (exact rate change of the element under its Gaussian +
    distortion gradient); they are sorted by predicted gain and tried in ``chunks`` chunks, each
    flipped at once (vectorised). At most ``max_evals`` true-cost evaluations are spent.

    A chunk is kept when a cheap screening cost drops (ideal code length of y under the float
    MSP model + distortion of the ``precision`` proxy synthesis, both at y's coded lattice point,
    so that the float model rounds as the coder does), and the true cost is measured
    after every ``verify_every`` MSP steps that changed something (their flips are dropped unless
    it drops too). ``screen=False`` skips the screening cost (one synthesis per chunk): all of a
    step's candidates are flipped at once, and only the true-cost verification decides; for CPUs
    where a synthesis is slow. ``fresh_maps``: the coding maps (snapped means and scales) that choose the
    candidates are recomputed after every step that changed, since a flip changes the context of
    everything coded after it. ``curvature`` adds a per-channel second-order distortion term to
    the predicted gain; ``passes`` runs the MSP steps that many times. Under a time budget, the
    gradient phases leave ``time_share`` of the budget to the search. ``order``: the order of
    the MSP steps within a pass, ``"msp"`` (coding order) or ``"reverse"`` (finest scale first:
    the steps with the most elements, whose flips change no other step's context; a short budget
    reaches them first). ``merge``: consecutive steps (in that order) searched as one block:
    their candidates are chosen from the same coding maps and ranked together, so a pass needs
    ``merge`` times fewer map recomputations and verifications.
    """

    enabled: bool = False
    fraction: float = 0.05
    threshold: float = 0.2
    chunks: int = 3
    max_evals: int = 48
    time_share: float = 0.25
    verify_every: int = 1
    screen: bool = True
    fresh_maps: bool = False
    curvature: bool = False
    passes: int = 1
    precision: str = "auto"
    order: str = "msp"
    merge: int = 1

    def __post_init__(self) -> None:
        if self.order not in SEARCH_ORDERS:
            raise ValueError(f"order must be one of {SEARCH_ORDERS}, got {self.order!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not (0.0 < self.fraction <= 1.0 and 0.0 < self.threshold <= 0.5):
            raise ValueError("fraction must be in (0, 1] and threshold in (0, 0.5]")
        if min(self.chunks, self.max_evals, self.verify_every, self.passes, self.merge) < 1:
            raise ValueError("chunks, max_evals, verify_every, passes and merge must be >= 1")
        if not 0.0 <= self.time_share <= 1.0:
            raise ValueError(f"time_share must be in [0, 1], got {self.time_share!r}")


@dataclass(frozen=True)
class Preset:
    """What an encoder profile does: gradient phases, then the greedy search.

    ``postfilter`` asks for the decoder post-filter (the codec enables it only for weights with a
    trained post-filter). ``postfilter_choice``: when the post-filter is enabled, the starting
    latents are also coded with it off, and the optimisation runs with whichever flag gives the
    lower true cost (the file header carries the flag), so an image the filter does not suit is
    never worse than ``fast``. ``encoder_finetune`` fine-tunes a copy of ``g_a`` (and of the
    other ``finetune_modules``: ``h_a``, ``syntax``) on the image for
    ``finetune_iters`` Adam steps (lr ``finetune_lr``, cosine-annealed to ``finetune_lr *
    finetune_lr_final``; the true cost measured every ``finetune_eval_every`` steps, 0 = at the
    end only, the best state kept) before the latent phases: the
    stronger form of online mode decision (Wang et al., CVPR 2022), which changes only what the
    encoder sends. It runs for images coded below trade-off ``finetune_max_lambda`` (lambda;
    :meth:`finetunes_at`) and, under a time budget, stops after ``finetune_share`` of the budget
    (its last true-cost evaluation included), leaving the rest to the phases and the search.

    ``quality_offsets`` (quality units, e.g. ``(-4.0,)``): a quality mode decision. The image is
    also analysed and coded at each asked quality + offset (rounded to the header's 0.01 steps,
    within 0..100), every candidate priced at the *asked* quality's lambda, and the optimisation
    goes on at the quality of lowest true cost; the file header carries that quality, so any
    decoder decodes it. It runs for images asked below trade-off ``quality_max_lambda``. A
    model trained at a few anchors is not exactly RD-optimal at its own quality positions (session 12: coding at quality - 4 was 0.9% cheaper at lambda(39.3) on
    training crops, ``scripts/quality_offset_probe.py``).

    ``greedy_after_finetune``: the search that runs where the fine-tuning runs (None: ``greedy``
    there too; :meth:`greedy_at`). After the fine-tuning the search starts from another point
    with another share of the budget left, so it may want other chunks and passes.
    """

    phases: tuple[Phase, ...] = ()
    greedy: GreedySearch = field(default_factory=GreedySearch)
    postfilter: bool = False
    postfilter_choice: bool = False
    encoder_finetune: bool = False
    finetune_iters: int = 30
    finetune_lr: float = 1e-4
    finetune_share: float = 1.0
    finetune_max_lambda: float = math.inf
    finetune_modules: tuple[str, ...] = ("g_a",)
    finetune_lr_final: float = 1.0
    finetune_eval_every: int = 0
    quality_offsets: tuple[float, ...] = ()
    quality_max_lambda: float = math.inf
    greedy_after_finetune: GreedySearch | None = None

    def __post_init__(self) -> None:
        if self.finetune_iters < 0 or not self.finetune_lr > 0:
            raise ValueError("finetune_iters must be >= 0 and finetune_lr > 0")
        if not 0.0 < self.finetune_share <= 1.0:
            raise ValueError(f"finetune_share must be in (0, 1], got {self.finetune_share!r}")
        if not (0.0 < self.finetune_lr_final <= 1.0 and self.finetune_eval_every >= 0):
            raise ValueError("finetune_lr_final must be in (0, 1] and finetune_eval_every >= 0")
        mods = self.finetune_modules
        if not (isinstance(mods, tuple) and "g_a" in mods and set(mods) <= set(FINETUNE_MODULES)):
            raise ValueError(f"finetune_modules must be a tuple with 'g_a' and some of "
                             f"{FINETUNE_MODULES}, got {mods!r}")
        if not self.finetune_max_lambda > 0:
            raise ValueError(f"finetune_max_lambda must be > 0, got {self.finetune_max_lambda!r}")
        offs = self.quality_offsets
        if not isinstance(offs, tuple) or not all(
                isinstance(o, (int, float)) and math.isfinite(o) and 0 < abs(o) <= 100
                for o in offs):
            raise ValueError("quality_offsets must be a tuple of non-zero finite quality offsets "
                             f"within +-100, got {offs!r}")
        if not self.quality_max_lambda > 0:
            raise ValueError(f"quality_max_lambda must be > 0, got {self.quality_max_lambda!r}")
        after = self.greedy_after_finetune
        if not (after is None or isinstance(after, GreedySearch)):
            raise ValueError(f"greedy_after_finetune must be a GreedySearch or None, "
                             f"got {after!r}")

    def offsets_at(self, lam: float) -> tuple[float, ...]:
        """The quality offsets tried for an image asked at trade-off ``lam`` (lambda)."""
        return self.quality_offsets if lam < self.quality_max_lambda * (1 - 1e-9) else ()

    def finetunes_at(self, lam: float) -> bool:
        """Whether the analysis transform is fine-tuned for an image coded at ``lam``."""
        return (self.encoder_finetune and self.finetune_iters > 0
                and lam < self.finetune_max_lambda * (1 - 1e-9))

    def greedy_at(self, lam: float) -> GreedySearch:
        """The greedy search that runs for an image asked at trade-off ``lam`` (lambda)."""
        if self.greedy_after_finetune is not None and self.finetunes_at(lam):
            return self.greedy_after_finetune
        return self.greedy

    def phases_at(self, lam: float) -> tuple[Phase, ...]:
        """The gradient phases that run for an image coded at trade-off ``lam`` (lambda)."""
        return tuple(p for p in self.phases if p.runs_at(lam))

    def at(self, lam: float) -> Preset:
        """This preset as it runs for an image asked at trade-off ``lam``: the phases, fine-tuning
        and quality offsets that apply there, their lambda thresholds dropped, and the settings
        of what does not run put back to their defaults. Two presets with equal ``at(lam)`` code
        an image at ``lam`` alike (the eval cache keys a profile's results on it)."""
        d = Preset()
        finetune = self.finetunes_at(lam)
        # the fine-tuning's settings where it runs, else the defaults
        tuning = {f: getattr(self if finetune else d, f) for f in _FINETUNE_SETTINGS}
        return replace(
            self,
            phases=tuple(replace(p, min_lambda=0.0, max_lambda=math.inf)
                         for p in self.phases_at(lam)),
            encoder_finetune=finetune, **tuning,
            finetune_max_lambda=d.finetune_max_lambda,
            quality_offsets=self.offsets_at(lam),
            quality_max_lambda=d.quality_max_lambda,
            greedy=self.greedy_at(lam), greedy_after_finetune=d.greedy_after_finetune,
        )

    @property
    def optimizes(self) -> bool:
        """True if the preset does any encoder-side optimisation."""
        return (bool(self.phases) or self.greedy.enabled or self.encoder_finetune
                or bool(self.quality_offsets))
