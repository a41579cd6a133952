"""The quantization core knows no model: SAM's module names appear in calib, export, autoquant
and recipes.py only in comments and docstrings (as examples), never in code. What is
model-specific lives in the model adapters (`trtq.models.adapters`, `trtq.models.sam_adapter`).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import trtq

PACKAGE = Path(trtq.__file__).parent
CORE = ("calib", "export", "autoquant", "recipes.py")
SAM_NAMES = re.compile(r"image_encoder|mask_decoder|prompt_encoder")


def _docstring_lines(tree: ast.AST) -> set[int]:
    """The lines of every module, class and function docstring."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines |= set(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def code_mentions(source: str) -> list[tuple[int, str]]:
    """(line, token) of each code token (names, strings that are not docstrings) naming a SAM
    module; comments and docstrings are skipped."""
    docstrings = _docstring_lines(ast.parse(source))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            continue
        if tok.type == tokenize.STRING and tok.start[0] in docstrings:
            continue
        if SAM_NAMES.search(tok.string):
            found.append((tok.start[0], tok.string))
    return found


def _core_files() -> list[Path]:
    files = []
    for part in CORE:
        path = PACKAGE / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_the_core_names_no_sam_module_in_code():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:60]}"
                 for path in _core_files() for line, text in code_mentions(path.read_text())]
    assert offenders == []


def test_the_check_sees_code_and_skips_comments_and_docstrings():
    source = ('"""`image_encoder.x` in a docstring."""\n'
              "# mask_decoder in a comment\n"
              "def f():\n"
              '    """prompt_encoder.* as an example."""\n'
              '    return model.image_encoder, "mask_decoder.*"  # prompt_encoder\n')
    assert code_mentions(source) == [(5, "image_encoder"), (5, '"mask_decoder.*"')]
    assert len(_core_files()) > 30
