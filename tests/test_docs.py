"""The documentation holds together: every relative link in README.md, CONTRIBUTING.md and
docs/*.md resolves (anchors included), every page in docs/ is reachable from the README, and
the README stays a front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
# Written on other branches at the same time as the README that links them; the lead's merge
# brings them in, and then their links are checked like every other.
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    """The page's relative link targets, outside code blocks."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, '-' for spaces."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, re.M)}


CASES = [(page, target) for page in PAGES for target in links(page)]


@pytest.mark.parametrize("page, target", CASES,
                         ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in CASES])
def test_every_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
    if anchor:
        assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: no heading for #{anchor}"


def test_every_page_in_docs_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").iterdir() if p.is_file()}
    assert pages - linked == set()


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:30])
    assert re.search(r"!\[[^\]]+\]\(docs/\S+\.(jpg|png)\)", first_screen)  # a picture
    assert re.search(r"^beam-seg segment \S+ --output \S+$", first_screen, re.M)  # one command


def test_outputs_page_documents_every_column_of_the_coverage_table():
    from beam_seg.tables.coverage import BASE_COLUMNS

    text = (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)`", text, re.M))
    documented |= {n for pair in re.findall(r"^\| `([a-z_]+)`, `([a-z_]+)`", text, re.M) for n in pair}
    assert {name for name, _, _ in BASE_COLUMNS} <= documented
