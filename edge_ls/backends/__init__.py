"""Inference backends, one module each, all behind :class:`edge_ls.backends.base.Runner`.

``onnxrt`` is the embedded default (CPU, and CUDA/TensorRT execution providers when present);
``edge_ls.engines`` holds the TensorRT runner, imported lazily because TensorRT is an optional extra.
"""
