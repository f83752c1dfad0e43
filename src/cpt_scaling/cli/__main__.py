"""``python -m cpt_scaling.cli``: the ``cpt-scaling`` command (what multi-process training launches run)."""

import sys

from cpt_scaling.cli.main import main

sys.exit(main())
