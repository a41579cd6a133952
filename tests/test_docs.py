"""The README and the docs/ pages stay true to the repository: their `trtq ...` command lines
parse, their relative links (and #anchors) resolve, every docs/ page is reachable from the
README, and every results file they cite exists with a complete provenance block."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trtq.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "experiments" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
REQUIRED = ("command", "commit", "date_utc", "machine")


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def trtq_lines(text: str) -> list[str]:
    """The `trtq ...` command lines of a page's bash blocks, continuations joined."""
    lines = []
    for block in bash_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith(("trtq ", ".venv/bin/trtq ")):
                lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation other than '-' and '_'
    dropped, spaces → '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_github_anchor_rules():
    assert github_anchor("The LogQuant plugin (AGQ's log2 quantizer in TensorRT)") == \
        "the-logquant-plugin-agqs-log2-quantizer-in-tensorrt"
    assert github_anchor("Measured: `trtq run` on CPU") == "measured-trtq-run-on-cpu"
    assert github_anchor("onnxruntime's `quantize_static` baseline") == \
        "onnxruntimes-quantize_static-baseline"


def test_trtq_lines_are_found_in_bash_blocks_only():
    text = ("```bash\ntrtq eval --data d \\\n  --split val --out x.json  # note\n```\n"
            "trtq export --out not-in-a-block\n```\ntrtq bogus\n```\n")
    assert trtq_lines(text) == ["trtq eval --data d    --split val --out x.json"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_command_lines_parse(page):
    """Every `trtq ...` line in the page's bash blocks is accepted by trtq's parser."""
    parser = build_parser()
    for line in trtq_lines(page.read_text(encoding="utf-8")):
        try:
            parser.parse_args(line.split()[1:])
        except SystemExit:
            pytest.fail(f"{_rel(page)}: trtq refuses `{line}`")


def test_docs_hold_the_command_examples():
    counts = {_rel(p): len(trtq_lines(p.read_text(encoding="utf-8"))) for p in PAGES}
    assert counts["README.md"] >= 3, counts
    assert sum(counts.values()) >= 20, counts


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    """Every relative link points at an existing file, and its #anchor at a heading there."""
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with that anchor in {dest.name})")
    assert broken == [], f"{_rel(page)}: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t.partition("#")[0]).resolve()
              for t in relative_links(REPO / "README.md")}
    missing = [_rel(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert missing == []


def test_readme_stays_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


def cited_results() -> list[str]:
    """Results files that a page links to (a figure's source); a file only named in a command,
    such as one a pending re-measurement will write, is not a citation."""
    cited = set()
    for page in PAGES:
        for target in relative_links(page):
            path = (page.parent / target.partition("#")[0]).resolve()
            if path.suffix == ".json" and path.parent == REPO / "experiments" / "results":
                cited.add(str(path.relative_to(REPO)))
    return sorted(cited)


def committed_results() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments/results").glob("*.json"))


def test_results_are_cited():
    assert len(cited_results()) >= 10


@pytest.mark.parametrize("name", sorted(set(cited_results()) | set(committed_results())))
def test_results_have_provenance(name):
    """A cited results file exists, and it (like every committed one) says what ran, from
    which commit, when, and on what machine."""
    path = REPO / name
    assert path.is_file(), f"{name} is cited but missing"
    block = json.loads(path.read_text(encoding="utf-8")).get("provenance")
    assert isinstance(block, dict), f"{name} has no provenance block"
    assert [k for k in REQUIRED if not block.get(k)] == [], f"{name}: incomplete provenance"
    assert re.fullmatch(r"[0-9a-f]{40}", block["commit"]), block["commit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", block["date_utc"]), block["date_utc"]
    assert isinstance(block["machine"], dict) and block["machine"]
    if block.get("reconstructed"):
        assert "note" in block, f"{name}: a reconstructed block says how it was reconstructed"
