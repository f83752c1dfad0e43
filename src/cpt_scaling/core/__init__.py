"""Core helpers every stage uses: errors, atomic writes, content keys, logging, the workflow-script adaptor."""
