"""Images for classification: class sub-folders (labelled) or one flat folder (unlabelled).

Labelled layout (torchvision's ImageFolder convention): ROOT/<class>/<image>; the label is the
index of <class> among the sorted sub-folder names, or its line number in a classes file (one
folder name per line, in the model's class order, e.g. ImageNet synsets). A flat folder has no
labels: it serves top-1 agreement between two models.
"""

from __future__ import annotations

import os
from pathlib import Path

from trtq.data.images import ImageFolder, load_rgb
from trtq.errors import DataError


class LabelledImages:
    def __init__(self, root: str | os.PathLike, classes_file: str | os.PathLike | None = None,
                 limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()
                         and not p.name.startswith("."))
        self.items: list[tuple[Path, int | None]] = []
        if not folders:
            self.items = [(p, None) for p in ImageFolder(self.root).paths]
        else:
            index = self._class_index(folders, classes_file)
            for folder in folders:
                self.items += [(p, index[folder.name]) for p in ImageFolder(folder).paths]
        self.items = self.items[:limit] if limit else self.items
        self.labelled = bool(folders)

    @staticmethod
    def _class_index(folders: list[Path], classes_file) -> dict[str, int]:
        if classes_file is None:
            return {f.name: i for i, f in enumerate(folders)}
        names = [line.strip() for line in Path(classes_file).read_text().splitlines()
                 if line.strip()]
        index = {name: i for i, name in enumerate(names)}
        unknown = [f.name for f in folders if f.name not in index]
        if unknown:
            raise DataError(f"class folder(s) {', '.join(unknown[:3])} are not in {classes_file}; "
                            "it must list every class folder name, one per line")
        return index

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        for path, label in self.items:
            yield path, load_rgb(path), label
