"""Planning: the sweep plan of a config (every artifact, its key and job) and which runs to do next."""
