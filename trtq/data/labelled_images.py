"""Images for classification: class sub-folders (labelled) or one flat folder (unlabelled).

Labelled layout (torchvision's ImageFolder convention): ROOT/<class>/<image>; the label is the
index of <class> among the sorted sub-folder names, or its line number in a classes file (one
folder name per line, in the model's class order, e.g. ImageNet synsets). A flat folder has no
labels: it serves top-1 agreement between two models.

Iterating yields (name, rgb, label): `name` is the image's path relative to ROOT in POSIX form
(`n01440764/x.JPEG`), so runs on copies of the same folder can be compared image by image.
Order is deterministic: sorted class folders, then sorted file names; `limit` keeps the first N.
"""

from __future__ import annotations

import os
from pathlib import Path

from trtq.data.images import ImageFolder, load_rgb
from trtq.errors import DataError


def read_classes_file(path: str | os.PathLike) -> list[str]:
    """Class folder names, one per line (blank lines skipped); line order = class index."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"classes file {path} cannot be read ({exc.__class__.__name__}); give a "
                        "text file with one class folder name per line") from None
    names = [n for n in names if n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates:
        raise DataError(f"classes file {path} is empty or repeats a name "
                        f"({', '.join(duplicates[:3]) or 'no names'}); list each class once")
    return names


class LabelledImages:
    def __init__(self, root: str | os.PathLike, classes_file: str | os.PathLike | None = None,
                 limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        folders = [p for p in entries if p.is_dir()]
        self.labelled = bool(folders)
        self.classes = [f.name for f in folders]
        if folders:
            loose = [p.name for p in entries if not p.is_dir()]
            if loose:
                raise DataError(f"{self.root} holds class folders and loose files (e.g. "
                                f"{loose[0]}); move each file into its class folder")
            index = self._class_index(folders, classes_file)
            items = [(p, index[f.name]) for f in folders for p in ImageFolder(f).paths]
        else:
            if classes_file is not None:
                raise DataError(f"{self.root} has no class sub-folders, so a classes file does "
                                "not apply; drop --classes or use ROOT/<class>/<image>")
            items = [(p, None) for p in ImageFolder(self.root).paths]
        self.items: list[tuple[Path, int | None]] = items[:limit] if limit else items

    @staticmethod
    def _class_index(folders: list[Path], classes_file) -> dict[str, int]:
        if classes_file is None:
            return {f.name: i for i, f in enumerate(folders)}
        index = {name: i for i, name in enumerate(read_classes_file(classes_file))}
        unknown = [f.name for f in folders if f.name not in index]
        if unknown:
            raise DataError(f"class folder(s) {', '.join(unknown[:3])} are not in {classes_file}; "
                            "it must list every class folder name, one per line")
        return index

    def name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        for path, label in self.items:
            yield self.name(path), load_rgb(path), label
