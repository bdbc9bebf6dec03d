"""Small-scale ablations of the entropy model and the model stream (docs/ablations.md, issue 3).

* :mod:`.variants` -- entropy models of y with MSPModel's contract: HyperpriorOnly (Balle 2018 /
  Minnen 2018 mean-scale hyperprior) and SerialContext (Minnen et al. 2018, masked 5x5 context).
* :mod:`.model` -- AblationModel: an AdapixModel with the entropy model swapped and the model
  stream switchable (``build_ablation_model``).
* :mod:`.train`, :mod:`.evaluate`, :mod:`.report` -- training with the project's data and loss,
  RD points / decode time, typed results (JSON, markdown).
* :mod:`.run` -- the CLI, ``python -m adapix.ablation --help``.
"""

from .model import AblationModel, Variant, build_ablation_model
from .run import main
from .variants import CONTEXTS, HyperpriorOnly, SerialContext

__all__ = ["AblationModel", "Variant", "build_ablation_model", "main", "CONTEXTS",
           "HyperpriorOnly", "SerialContext"]
