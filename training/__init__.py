"""``edge_ls.training``: datasets, models, trainers and metrics that produce every tier (needs torch)."""
