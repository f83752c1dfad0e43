"""Names a config fixes for the whole pipeline, imported wherever a module needs them (defined here only)."""

#: The general corpus: always in ``data.seeds``, the pretraining data and the suite every run is scored on.
GENERAL = "general"

#: Eval suite names are ``<corpus><SPLIT_SEP><split>``, split ``test`` (reported) or ``val`` (selection).
SPLIT_SEP = ":"
