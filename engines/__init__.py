"""``edge_ls.engines``: TensorRT engine building, caching and the TensorRT runner (optional ``gpu`` extra)."""
