#!/usr/bin/env python3
"""Check that every citation of the project's docs resolves to a file and a section that exist.

Finds, in every tracked text file, citations ``docs/<file>.md`` and ``docs/<file>.md#<anchor>``, and in
the Markdown files under ``docs/`` their relative links ``](other.md#anchor)`` / ``](#anchor)``; each
must name an existing file and, with an anchor, a section of it: an explicit ``<a id="...">`` or a
heading's GitHub-style slug. ``--strict`` also fails on citations of documents outside the repository
("SPEC §…", "SPEC.md", "DESIGN.md", "DESIGN \"…\""), which ``.ci/rewrite_spec_citations.py`` rewrites.
Standard library only; exit 1 with one line per problem.

Usage::

    python .ci/check_doc_links.py [--strict] [FILE ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".cfg", ".ini", ".sh", ".json", ""}
# Files that quote the old citations on purpose (the mapping, the tools, their tests).
EXEMPT_STRICT = {
    "docs/notes/i15-citations.md",
    ".ci/rewrite_spec_citations.py",
    ".ci/check_doc_links.py",
    "tests/test_docs_links.py",
    "tests/trainers/test_paper_tables.py",  # checks its embedded copy against SPEC.md when reachable
}

# Files whose citations are test fixtures, not citations.
EXEMPT = {"tests/test_docs_links.py"}

CITATION = re.compile(r"(?<![\w./-])docs/(?P<file>[\w./-]+?\.md)(?:#(?P<anchor>[\w-]+))?")
MD_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
EXPLICIT_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LEGACY = re.compile(r"SPEC(?:\.md)?\s*§|\bSPEC\.md\b|\bDESIGN\.md\b|\bDESIGN\s+\"")


@dataclass(frozen=True)
class Problem:
    where: str  # file:line
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def slug(heading: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped (``-`` and ``_`` kept), spaces → ``-``."""
    h = re.sub(r"<[^>]+>", "", heading)  # inline html
    h = re.sub(r"`([^`]*)`", r"\1", h)
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h)  # links keep their text
    h = h.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    """Every anchor a Markdown file defines (explicit ids and heading slugs, deduplicated as GitHub does)."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        out.update(EXPLICIT_ID.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def tracked_files(root: Path = ROOT) -> list[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
    return sorted(n for n in set(names) if Path(n).suffix in TEXT_SUFFIXES or Path(n).name == "Makefile")


class Checker:
    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self._anchors: dict[Path, set[str]] = {}

    def _resolve(self, target: Path, anchor: str | None, where: str, shown: str) -> list[Problem]:
        if not target.is_file():
            return [Problem(where, f"{shown}: no file {target.relative_to(self.root)}")]
        if anchor is None:
            return []
        if target not in self._anchors:
            self._anchors[target] = anchors(target)
        if anchor not in self._anchors[target]:
            return [Problem(where, f"{shown}: no section #{anchor} in {target.relative_to(self.root)}")]
        return []

    def check_file(self, name: str, *, strict: bool = False) -> list[Problem]:
        if name in EXEMPT:
            return []
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            return []
        problems: list[Problem] = []
        in_docs = name.startswith("docs/") and name.endswith(".md")
        fenced = False  # relative links inside ``` blocks of a doc are quoted text (e.g. README drafts)
        for no, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{no}"
            if in_docs and line.lstrip().startswith("```"):
                fenced = not fenced
            for m in CITATION.finditer(line):
                problems += self._resolve(
                    self.root / "docs" / m.group("file"), m.group("anchor"), where, m.group(0)
                )
            if in_docs and not fenced:
                for m in MD_LINK.finditer(line):
                    t = m.group("target")
                    if "://" in t or t.startswith("mailto:"):
                        continue
                    file_part, _, anchor = t.partition("#")
                    if not file_part.endswith(".md") and file_part:
                        continue
                    target = (path.parent / file_part).resolve() if file_part else path
                    problems += self._resolve(target, anchor or None, where, t)
            if strict and name not in EXEMPT_STRICT:
                for m in LEGACY.finditer(line):
                    problems.append(
                        Problem(
                            where,
                            f"cites {m.group(0).strip()!r}, a document outside the repository; "
                            "run .ci/rewrite_spec_citations.py",
                        )  # fmt: skip
                    )
        return problems

    def check(self, names: Iterable[str], *, strict: bool = False) -> list[Problem]:
        out: list[Problem] = []
        for name in names:
            out += self.check_file(name, strict=strict)
        return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strict", action="store_true", help='also fail on "SPEC §" / "DESIGN.md" citations')
    ap.add_argument("files", nargs="*", help="files relative to the repository root (default: all tracked)")
    ns = ap.parse_args(argv)
    problems = Checker().check(ns.files or tracked_files(), strict=ns.strict)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
