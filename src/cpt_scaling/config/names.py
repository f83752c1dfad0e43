"""Names a config fixes for the whole pipeline, imported wherever a module needs them (defined here only;
``POOL``, the unfiltered pool corpus, is the data stage's own name, re-exported here)."""

from cpt_scaling.data import POOL as POOL

#: The general corpus: always in ``data.seeds``, the pretraining data and the suite every run is scored on.
GENERAL = "general"

#: Eval suite names are ``<corpus><SPLIT_SEP><split>``, split ``test`` (reported) or ``val`` (selection).
SPLIT_SEP = ":"
