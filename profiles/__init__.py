"""``edge_ls.profiles``: the deployment-tier profiles (one TOML file per tier) and their loader."""
