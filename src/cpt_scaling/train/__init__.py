"""Training: specs, the trainer, checkpoints and their state, mixture sampling, schedules, launching."""
