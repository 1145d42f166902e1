"""``edge-ls bench``: every tier on the same labelled scenes, peers beside them (see bench/README.md)."""
