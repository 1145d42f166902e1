"""Bundled models: ONNX files shipped inside the package, addressable by name."""
