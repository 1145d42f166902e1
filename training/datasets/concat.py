"""Several datasets as one (``data.roots`` with more than one folder)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge_ls.errors import ConfigError
from edge_ls.training.datasets.base import Sample, SegmentationDataset


class ConcatDataset(SegmentationDataset):
    """Datasets one after the other; ids and groups keep each member's ``<dataset>/`` prefix."""

    def __init__(self, members: Sequence[SegmentationDataset]) -> None:
        if not members:
            raise ConfigError("no datasets to combine")
        bands = {m.bands for m in members}
        ranges = {m.input_range for m in members}
        if len(bands) != 1 or len(ranges) != 1:
            raise ConfigError(
                "datasets to combine must share bands and input_range: "
                + "; ".join(f"{m.name}: {m.bands}, {m.input_range}" for m in members)
            )
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"datasets to combine have the same name ({', '.join(names)}): rename a folder")
        super().__init__("+".join(names), members[0].bands, members[0].input_range)
        self.members = list(members)
        self._offsets = np.cumsum([0] + [len(m) for m in members])

    @property
    def ids(self) -> list[str]:
        return [i for m in self.members for i in m.ids]

    def _locate(self, i: int) -> tuple[SegmentationDataset, int]:
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return self.members[k], i - int(self._offsets[k])

    def _load(self, i: int) -> Sample:
        member, j = self._locate(i)
        return member._load(j)

    def _region(self, i: int) -> str:
        member, j = self._locate(i)
        return member._region(j)

    @property
    def groups(self) -> list[str]:
        if self._groups is None:
            self._groups = [g for m in self.members for g in m.groups]
        return self._groups

    @property
    def skipped(self) -> Counter[str]:  # type: ignore[override]
        total: Counter[str] = Counter()
        for m in self.members:
            total.update(m.skipped)
        return total

    @skipped.setter
    def skipped(self, value: Counter[str]) -> None:  # the base __init__ assigns it
        pass

    def try_get(self, i: int) -> Sample | None:
        member, j = self._locate(i)
        return member.try_get(j)

    @property
    def given_splits(self) -> dict[str, str]:
        """The members' own splits (ids of members without one are absent)."""
        out: dict[str, str] = {}
        for m in self.members:
            out.update(getattr(m, "given_splits", {}))
        return out
