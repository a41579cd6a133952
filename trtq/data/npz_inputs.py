"""Network inputs saved as .npz files, for a user's model that is not fed pictures
(`trtq calibrate --model file.py:factory --calib-data DIR`).

Each `DIR/*.npz` (sorted by name) holds the arguments of one call of the model's `forward`,
batch axis first: keyed by the parameter names (`np.savez(path, x=..., mask=...)`) or unnamed,
as `np.savez(path, a, b)` writes them (`arr_0`, `arr_1`, ...: positional order). Arrays are read
without pickle. Every file must give the same arguments.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from trtq.errors import DataError

_POSITIONAL = re.compile(r"arr_(\d+)")


def _keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return list(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({type(exc).__name__}); save "
                        "inputs with numpy.savez") from None


class NpzInputs:
    """The .npz files of a folder (not recursive), sorted by name, checked up front."""

    def __init__(self, root: str | os.PathLike, limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"input folder {self.root} does not exist or is not a folder")
        files = sorted(p for p in self.root.iterdir()
                       if p.is_file() and not p.name.startswith("."))
        others = [p.name for p in files if p.suffix.lower() != ".npz"]
        if others or not files:
            found = f"holds {others[0]}" if others else "is empty"
            raise DataError(f"{self.root} {found}; --calib-data for a user's model is a folder "
                            "of .npz files (one forward call's inputs each); for pictures "
                            "use --images DIR")
        self.paths = files[:limit] if limit else files
        self.keys = [_keys(p) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def arguments(self, names: list[str], required: int) -> list[str]:
        """The forward arguments the files give, in positional order; `names` are `forward`'s
        positional parameters, the first `required` of them without defaults."""
        given = [self._order(path, keys, names, required)
                 for path, keys in zip(self.paths, self.keys, strict=True)]
        if any(g != given[0] for g in given):
            other = next(i for i, g in enumerate(given) if g != given[0])
            raise DataError(f"{self.paths[other]} gives {given[other]} but {self.paths[0]} "
                            f"gives {given[0]}; every .npz file needs the same arguments")
        return given[0]

    @staticmethod
    def _order(path: Path, keys: list[str], names: list[str], required: int) -> list[str]:
        signature = f"forward({', '.join(names)})"
        positions = [_POSITIONAL.fullmatch(k) for k in keys]
        if keys and all(positions):
            count = len(keys)
            if sorted(int(m.group(1)) for m in positions) != list(range(count)):
                raise DataError(f"{path} has unnamed arrays {sorted(keys)}: they must be arr_0 "
                                "... arr_N-1, in the order of the model's forward arguments")
            if count > len(names):
                raise DataError(f"{path} holds {count} arrays but the model's {signature} "
                                f"takes {len(names)}")
            keys = names[:count]
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise DataError(f"{path} has {unknown[0]!r}, which the model's {signature} does not "
                            "take; name the arrays after forward's arguments")
        count = max((names.index(k) + 1 for k in keys), default=0)
        missing = [n for n in names[:max(count, required)] if n not in keys]
        if missing:
            raise DataError(f"{path} lacks {missing[0]!r}, an argument of the model's "
                            f"{signature}; give every argument up to the last one used")
        return names[:count]

    def load(self, index: int, names: list[str]) -> tuple[np.ndarray, ...]:
        """The arrays of file `index` in the order of `names` (from `arguments`)."""
        path = self.paths[index]
        with np.load(path, allow_pickle=False) as data:
            named = data.files and not _POSITIONAL.fullmatch(data.files[0])
            return tuple(data[n] if named else data[f"arr_{i}"] for i, n in enumerate(names))

    def name(self, index: int) -> str:
        return str(self.paths[index])
