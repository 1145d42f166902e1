"""Split groups on real tiles: CAS stride-256 overlaps, non-square tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ls.training.datasets import FolderPairs, fingerprint, open_dataset


def test_hokkaido_groups_are_real_stride_256_overlaps(hokkaido: FolderPairs) -> None:
    groups = hokkaido.groups
    clusters: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        clusters.setdefault(g, []).append(i)
    multi = [c for c in clusters.values() if len(c) > 1]
    assert len(clusters) == 29 and len(multi) == 6  # 13 tiles in 6 overlap clusters

    # Check each linked pair independently: some 256-px half of one equals a half of the other.
    def quads(im: np.ndarray) -> list[np.ndarray]:
        return [im[y : y + 256, x : x + 256] for y in (0, 256) for x in (0, 256)]

    for members in multi:
        images = [hokkaido[i].image for i in members]
        for k, a in enumerate(images):
            others = images[:k] + images[k + 1 :]
            assert any(np.array_equal(p, q) for b in others for p in quads(a) for q in quads(b))
    # Tiles never linked share no block.
    singles = [c[0] for c in clusters.values() if len(c) == 1][:6]
    blocks = [set(fingerprint(hokkaido[i].image).blocks) for i in singles]
    assert all(not (blocks[i] & blocks[j]) for i in range(len(blocks)) for j in range(i))


def test_bijie_non_square_tiles_each_their_own_group(real_data: Path) -> None:
    ds = open_dataset(real_data / "bijie")
    assert len(ds) == 36 and len(set(ds.groups)) == 36
    s = ds[0]
    assert s.image.shape == (512, 547, 3) and s.mask.shape == (512, 547)
