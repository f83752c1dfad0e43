"""The one cost model (parameters, FLOPs), the per-GPU memory model and SLURM resources derived from them."""
