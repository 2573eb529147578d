"""Docs citations: every ``docs/…#…`` in the repository resolves; the SPEC/DESIGN rewrite works.

``.ci/check_doc_links.py`` checks citations, ``.ci/rewrite_spec_citations.py`` replaces the old
"SPEC §x.y" / "DESIGN.md" ones using the table of ``docs/notes/i15-citations.md``.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = mod  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def links():
    yield _load("check_doc_links")
    sys.modules.pop("check_doc_links", None)


@pytest.fixture(scope="module")
def rewrite():
    yield _load("rewrite_spec_citations")
    sys.modules.pop("rewrite_spec_citations", None)


def test_every_docs_citation_resolves(links):
    files = links.tracked_files()
    assert "docs/protocol.md" in files and "docs/store.md" in files
    problems = links.Checker().check(files)
    assert problems == [], "\n".join(map(str, problems))


def test_no_citation_of_documents_outside_the_repository(links):
    problems = links.Checker().check(links.tracked_files(), strict=True)
    assert problems == [], "\n".join(map(str, problems))


def test_checker_reports_missing_files_and_sections(links, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        '# Title\n\n<a id="roi-rule"></a>\n## 2.3 Acceptance (ROI)\n\n## Same\n## Same\n'
        "```\n## not a heading\n```\nSee [b](b.md#x) and [self](#roi-rule), [web](https://x.org/#y).\n"
    )
    (tmp_path / "docs" / "b.md").write_text("# B\n")
    (tmp_path / "m.py").write_text(
        "# docs/a.md#roi-rule docs/a.md#23-acceptance-roi docs/a.md#same-1 docs/a.md\n"
        "# docs/a.md#nope docs/c.md docs/a.md#not-a-heading\n"
        "# SPEC §2.3 and DESIGN.md\n"
    )
    checker = links.Checker(tmp_path)
    got = [str(p) for p in checker.check(["m.py", "docs/a.md", "docs/b.md"])]
    assert got == [
        "m.py:2: docs/a.md#nope: no section #nope in docs/a.md",
        "m.py:2: docs/c.md: no file docs/c.md",
        "m.py:2: docs/a.md#not-a-heading: no section #not-a-heading in docs/a.md",
        "docs/a.md:11: b.md#x: no section #x in docs/b.md",
    ]
    strict = [str(p) for p in checker.check(["m.py"], strict=True)]
    assert len(strict) == len(got) - 1 + 2 and any("'SPEC §'" in p for p in strict)


def test_slugs_follow_github(links):
    assert links.slug("2.3 Acceptance (“≥ 20 % cell content”)") == "23-acceptance--20--cell-content"
    assert links.slug("The `omero` windows") == "the-omero-windows"
    assert links.slug("Pixel size, known or not") == "pixel-size-known-or-not"


def test_mapping_covers_every_spec_section_and_resolves(rewrite, links):
    sections, literals = rewrite.load_mapping()
    want = {"1", "1.1", "1.2", "1.3", "2", *(f"2.{i}" for i in range(1, 8)), "3", "3.1", "3.2", "3.3", "4"}
    want |= {*(f"4.{i}" for i in range(1, 8)), "5", "6", "6.1", "6.2", "6.3", "7", "7.1", "7.2", "8"}
    assert set(sections) == want
    checker = links.Checker()
    for sec, target in sections.items():
        file, _, anchor = target.removeprefix("docs/").partition("#")
        assert checker._resolve(ROOT / "docs" / file, anchor or None, f"§{sec}", target) == []
    for _old, new in literals:
        for m in links.CITATION.finditer(new):
            assert checker._resolve(ROOT / "docs" / m.group("file"), m.group("anchor"), "", new) == []


def test_rewrite_text(rewrite):
    sections, literals = rewrite.load_mapping()
    cases = {
        "accepted (SPEC §2.3).": "accepted (docs/protocol.md#roi-rule).",
        "(SPEC.md §2.4-2.6)": "(docs/protocol.md#patch-names to #split)",
        "(SPEC §2.2–2.3)": "(docs/protocol.md#sliding-window to #roi-rule)",
        "(SPEC §1.1, §2.7)": "(docs/protocol.md#raw-tile-files, #counts)",
        "reference/SPEC.md §4: 8-bit": "docs/protocol.md#evaluation: 8-bit",
        "SPEC §8 item 11": "docs/protocol.md#quirks item 11",
        '(DESIGN.md, "The store contract")': "(docs/store.md)",
        'See DESIGN.md ("The store contract") for': "See docs/store.md for",
        '(DESIGN.md, "Sampling and loading")': "(docs/store.md#reading)",
        'disabled (DESIGN "Lessons").': "disabled (docs/design.md#lessons).",
        "follows `DESIGN.md` (one": "follows `docs/design.md` (one",
        "TORCH_SPEC=x and SPEC.md-less text": "TORCH_SPEC=x and SPEC.md-less text",
    }
    for old, new in cases.items():
        assert rewrite.rewrite_text(old, sections, literals) == new
        assert rewrite.rewrite_text(new, sections, literals) == new  # idempotent
    with pytest.raises(KeyError, match="§9.9"):
        rewrite.rewrite_text("SPEC §9.9", sections, literals)


def test_wrap_keeps_python_valid_and_words_in_order(rewrite):
    src = (
        "def f():\n"
        '    """Summary line that is long enough to overflow once a citation is longer than it was.\n'
        "\n"
        "    - A bullet whose text is long enough to run past the limit of one hundred and ten columns here\n"
        "      and continues on this line.\n"
        '    """\n'
        "    x = 1  # an inline comment after code that is long enough to go past one hundred and ten cols\n"
        "    return x\n"
    )
    new, long_lines = rewrite.wrap_long_lines(src, {2, 4, 7}, limit=60)
    ast.parse(new)
    assert long_lines == []
    assert all(len(line) <= 60 for line in new.splitlines())

    def words(text: str) -> list[str]:
        return sorted(w for w in text.split() if w != "#")  # a wrapped comment gains a "#"

    assert words(new) == words(src)  # nothing lost or added

    def doc(text: str) -> str:
        return " ".join(ast.get_docstring(ast.parse(text).body[0]).split())  # type: ignore[arg-type]

    assert doc(new) == doc(src)  # the docstring's words in the same order
    assert "      and continues" not in new  # the overflow joined the bullet's next line
    lines = new.splitlines()
    assert lines[lines.index("    x = 1") - 1].lstrip().startswith("#")  # comment moved above its code


def test_the_tree_has_nothing_left_to_rewrite(rewrite, links):
    """`.ci/rewrite_spec_citations.py` has run on the tree: it is a no-op now (new code cites docs/)."""
    reports: list[str] = []
    assert rewrite.run(links.tracked_files(), check=True, report=reports.append) == [], "\n".join(reports)
