"""``python -m adapix.ablation``: see :mod:`adapix.ablation.run`."""

import sys

from .run import main

sys.exit(main())
