"""A directory of model versions: ``model-v0001.npz`` (+ ``.json``) and ``CURRENT``.

Training and admin feedback add a version and point ``CURRENT`` at it;
``rollback`` points it at the previous version, ``restore(v)`` at any
kept version.  Old files are never rewritten, so a rollback is exact.
"""

from __future__ import annotations

import re
from pathlib import Path

from node.risk.errors import RiskModelError
from node.risk.model import RiskModel

_NAME = re.compile(r"model-v(\d{4,})\.npz")


class ModelStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, version: int) -> Path:
        return self.dir / f"model-v{version:04d}.npz"

    def versions(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _NAME.fullmatch(p.name)))

    def current_version(self) -> int:
        marker = self.dir / "CURRENT"
        if marker.exists():
            text = marker.read_text().strip()
            if not text.isdigit():
                raise RiskModelError(f"{marker} must hold a version number, got {text[:40]!r}")
            return int(text)
        versions = self.versions()
        if not versions:
            raise RiskModelError(f"no risk model in {self.dir}: run `qenexd risk train --out {self.dir}`")
        return versions[-1]

    def load(self, version: int | None = None) -> RiskModel:
        if not self.dir.is_dir():
            raise RiskModelError(f"risk model directory {self.dir} does not exist")
        v = self.current_version() if version is None else version
        model = RiskModel.load(self.path(v))
        if model.version != v:
            raise RiskModelError(f"{self.path(v)} says it is version {model.version}, its name says {v}")
        return model

    def save_new(self, model: RiskModel, *, parent: int | None = None) -> int:
        version = (self.versions() or [0])[-1] + 1
        model.meta = dict(model.meta, version=version, parent_version=parent)
        model.save(self.path(version))
        self.set_current(version)
        return version

    def set_current(self, version: int) -> None:
        if version not in self.versions():
            raise RiskModelError(f"no model version {version} in {self.dir} (have {self.versions()})")
        tmp = self.dir / "CURRENT.tmp"
        tmp.write_text(f"{version}\n")
        tmp.replace(self.dir / "CURRENT")

    def rollback(self) -> int:
        current = self.current_version()
        older = [v for v in self.versions() if v < current]
        if not older:
            raise RiskModelError(f"version {current} is the oldest in {self.dir}: nothing to roll back to")
        self.set_current(older[-1])
        return older[-1]
