"""``edge_ls.export``: ONNX export, pruning, quantization and tier artifacts (needs torch)."""
