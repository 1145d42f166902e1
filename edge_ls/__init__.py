"""edge-ls: landslide segmentation from training to tiered deployment.

Runtime data flows one way: read -> tile -> infer -> blend -> write. This package (the runtime) never
imports torch; training and export live in ``edge_ls.training`` and ``edge_ls.export``.
"""

__version__ = "0.1.0"
