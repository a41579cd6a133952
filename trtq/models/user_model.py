"""A user's own model on the command line: `--model package.module:factory` or
`--model path/to/file.py:factory`.

The factory is called with no arguments and returns an `nn.Module`, or a `(module, preprocess)`
pair where `preprocess(image)` maps an (H, W, 3) uint8 RGB array to a (C, H, W) float32 tensor
(the network's input for one picture). A file is loaded by its path
(`importlib.util.spec_from_file_location`): `sys.path` is left alone, so a file that imports its
sibling files should be made a package and named as `package.module:factory`.

Every way a reference can be wrong is a `TrtqError` saying what to fix: no such module or file,
no such attribute, not callable, arguments it needs, an exception inside it, a result that is
not an `nn.Module`, a preprocess that is not callable or returns the wrong thing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trtq.artifacts import sha256_file
from trtq.errors import TrtqError

log = logging.getLogger("trtq.models")

FORM = "package.module:factory or path/to/file.py:factory"
PREPROCESS_FORM = "preprocess(image: HxWx3 uint8 RGB numpy array) -> CxHxW float32 tensor"


def is_user_reference(model: str) -> bool:
    """Whether `--model` names a user's factory (registered names have no colon)."""
    return ":" in model


@dataclass(frozen=True)
class UserModel:
    """A user's network, its optional preprocessing, and where both came from."""

    module: object  # torch.nn.Module, in eval mode
    preprocess: Callable | None
    reference: str  # canonical: a file's absolute path, or the module name, then :factory
    provenance: dict = field(default_factory=dict)  # for sidecars: reference, file, SHA-256s

    def image(self, rgb: np.ndarray, name: str = "the image") -> np.ndarray:
        """`preprocess(rgb)` checked and batched: (1, C, H, W) float32."""
        if self.preprocess is None:
            raise TrtqError(f"{self.reference} has no preprocess: return (module, preprocess) "
                            "from the factory")
        try:
            out = self.preprocess(rgb)
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise TrtqError(f"the preprocess of {self.reference} failed on {name} "
                            f"({type(exc).__name__}: {exc}); it must be {PREPROCESS_FORM}") \
                from exc
        array = out.detach().cpu().numpy() if hasattr(out, "detach") else out
        if not isinstance(array, np.ndarray) or array.ndim != 3 \
                or not np.issubdtype(array.dtype, np.floating):
            what = (f"{array.dtype} {tuple(array.shape)}" if isinstance(array, np.ndarray)
                    else type(out).__name__)
            raise TrtqError(f"the preprocess of {self.reference} returned {what} for {name}; "
                            f"it must be {PREPROCESS_FORM}")
        return array.astype(np.float32, copy=False)[None]


def _split(reference: str) -> tuple[str, str]:
    target, _, attr = reference.rpartition(":")
    if not target or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise TrtqError(f"--model {reference!r}: give a registered model name, or your own as "
                        f"{FORM} (a function that returns the nn.Module)")
    return target, attr


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


class _ReadOnlyLoader(importlib.machinery.SourceFileLoader):
    """Loads the user's file without writing `__pycache__` beside it."""

    def set_data(self, path, data, *, _mode=0o666) -> None:
        return None


def _module_from_file(target: str):
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise TrtqError(f"--model: file {target} does not exist; check the path (relative "
                        "paths start from the current folder)")
    if path.suffix != ".py":
        raise TrtqError(f"--model: {target} is not a Python file (.py); give "
                        "path/to/file.py:factory")
    name = f"_trtq_user_{path.stem}_{sha256_file(path)[:12]}"
    spec = importlib.util.spec_from_file_location(name, path,
                                                  loader=_ReadOnlyLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error in it is theirs to fix
        del sys.modules[name]
        hint = (" (a file importing its sibling files: make the folder a package and pass "
                "package.module:factory)" if isinstance(exc, ImportError) else "")
        raise TrtqError(f"running {target} failed ({type(exc).__name__}: {exc}); fix the "
                        f"file{hint}") from exc
    return module, path


def _import(target: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise TrtqError(f"--model: module {target!r} is not found; install it, run from "
                            "the folder that holds it, or give a file as "
                            "path/to/file.py:factory") from exc
        raise TrtqError(f"importing {target} failed: it imports {exc.name!r}, which is not "
                        "installed") from exc
    except Exception as exc:  # the user's code: any error in it is theirs to fix
        raise TrtqError(f"importing {target} failed ({type(exc).__name__}: {exc}); fix the "
                        "module") from exc


def _factory(module, target: str, attr: str) -> Callable:
    found = module
    for part in attr.split("."):
        if not hasattr(found, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            raise TrtqError(f"--model: {target} has no attribute {attr!r}; it defines "
                            f"{', '.join(names[:8]) or 'no functions'}")
        found = getattr(found, part)
    if not callable(found):
        raise TrtqError(f"--model: {target}:{attr} is a value of type {type(found).__name__}, "
                        "not a function; name a function that returns the nn.Module")
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):  # no signature to read (a builtin): calling it will tell
        return found
    try:
        signature.bind()
    except TypeError:
        raise TrtqError(f"--model: {target}:{attr} needs arguments; the factory is called "
                        "with none (wrap it: def make(): return factory(...))") from None
    return found


def _unpack(result, where: str):
    import torch

    preprocess = None
    if isinstance(result, (tuple, list)) and len(result) == 2:
        result, preprocess = result
        if not callable(preprocess):
            raise TrtqError(f"{where} returned a value of type {type(preprocess).__name__} as "
                            f"the preprocess; it must be callable: {PREPROCESS_FORM}")
    if not isinstance(result, torch.nn.Module):
        raise TrtqError(f"{where} returned a value of type {type(result).__name__}, not a "
                        "torch.nn.Module (or a (module, preprocess) pair); return the network")
    return result, preprocess


def _load_weights(module, checkpoint, reference: str) -> str:
    from trtq.models.checkpoints import load_state_dict, load_strict

    load_strict(module, load_state_dict(checkpoint), reference, checkpoint)
    return sha256_file(checkpoint)


def load_user_model(reference: str, checkpoint: str | os.PathLike | None = None) -> UserModel:
    """Import or load the factory named by `reference`, call it, check what it returned, and
    load `checkpoint` (a state dict) into the module strictly when given."""
    target, attr = _split(reference)
    provenance: dict = {"reference": reference}
    if _is_file_target(target):
        module, path = _module_from_file(target)
        canonical = f"{path}:{attr}"
        provenance |= {"file": str(path), "file_sha256": sha256_file(path)}
    else:
        module = _import(target)
        canonical = f"{target}:{attr}"
        source = getattr(module, "__file__", None)
        if source:
            provenance |= {"file": source, "file_sha256": sha256_file(source)}
    factory = _factory(module, target, attr)
    try:
        result = factory()
    except Exception as exc:  # the user's code: any error in it is theirs to fix
        raise TrtqError(f"{reference}() raised {type(exc).__name__}: {exc}; fix the "
                        "factory") from exc
    network, preprocess = _unpack(result, f"{reference}()")
    if checkpoint is not None:
        provenance["checkpoint_sha256"] = _load_weights(network, checkpoint, canonical)
        provenance["checkpoint"] = str(checkpoint)
    log.info("loaded %s (%s, %s preprocess)", canonical, type(network).__name__,
             "with" if preprocess else "no")
    return UserModel(network.eval(), preprocess, canonical, provenance)


def forward_arguments(module) -> tuple[list[str], int]:
    """The names of `module.forward`'s positional parameters, and how many are required."""
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in params)
    return [p.name for p in params], required
