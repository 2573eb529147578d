#!/usr/bin/env python3
"""Rewrite "SPEC §x.y" / "DESIGN.md" citations in tracked files to the project's own docs.

The mapping lives in one place, the tables of ``docs/notes/i15-citations.md``; this script reads it.
Idempotent: a second run changes nothing. Standard library only.

Usage::

    python .ci/rewrite_spec_citations.py            # rewrite every tracked text file in place
    python .ci/rewrite_spec_citations.py --check    # list what would change, exit 1 if anything would
    python .ci/rewrite_spec_citations.py FILE ...   # only these files
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_doc_links import tracked_files  # noqa: E402 - one file lister for both .ci tools

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "docs" / "notes" / "i15-citations.md"
# Files that talk *about* the old citations and must keep them.
EXEMPT = {
    "docs/notes/i15-citations.md",
    ".ci/rewrite_spec_citations.py",
    ".ci/check_doc_links.py",
    "tests/test_docs_links.py",
}

_SECTION_ROW = re.compile(r"^\|\s*§(\d+(?:\.\d+)?)\s*\|[^|]*\|\s*(docs/\S+?)\s*\|\s*$")
_PAIR_ROW = re.compile(r"^\|\s*(.+?)\s*\|\s*(.+?)\s*\|\s*$")
_SEC = r"\d+(?:\.\d+)?(?![\d.]*\d)"
SPEC_CITATION = re.compile(
    rf"(?:reference/)?SPEC(?:\.md)?\s*§\s*(?P<a>{_SEC})(?:\s*[-–]\s*(?P<b>{_SEC}))?"
    rf"(?P<more>(?:\s*,\s*§\s*{_SEC})*)"  # "SPEC §1.1, §2.7": the later sections too
)
_MORE = re.compile(rf"§\s*({_SEC})")
LINE_LIMIT = 110  # ruff's line-length in pyproject.toml


def load_mapping(path: Path = MAPPING) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(SPEC section -> target, [(literal text, replacement)]) from the notes file's tables."""
    sections: dict[str, str] = {}
    literals: list[tuple[str, str]] = []
    table = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            table = line[3:].strip().lower()
            continue
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        m = _SECTION_ROW.match(line)
        if table == "spec sections" and m:
            sections[m.group(1)] = m.group(2)
            continue
        m = _PAIR_ROW.match(line)
        if table in ("design citations", "other bare mentions") and m:
            old, new = m.group(1), m.group(2)
            if old.lower() in ("design citation", "text"):
                continue  # header row
            literals.append((old, new))
    if not sections:
        raise SystemExit(f"{path}: no SPEC section rows found; is the mapping table intact?")
    # longest literal first, so `DESIGN.md` (with backticks) wins over DESIGN.md
    literals.sort(key=lambda kv: -len(kv[0]))
    return sections, literals


def _section_target(sections: dict[str, str], sec: str, where: str) -> str:
    if sec in sections:
        return sections[sec]
    major = sec.split(".")[0]
    if major in sections:
        return sections[major]
    raise KeyError(f"{where}: SPEC §{sec} has no row in {MAPPING.relative_to(ROOT)}; add one")


def rewrite_text(
    text: str, sections: dict[str, str], literals: Iterable[tuple[str, str]], where: str = ""
) -> str:
    """`text` with every SPEC/DESIGN citation replaced (already rewritten text is left alone)."""

    def anchor_of(target: str) -> str:
        return "#" + target.split("#", 1)[1] if "#" in target else target

    def spec(m: re.Match[str]) -> str:
        out = _section_target(sections, m.group("a"), where)
        if m.group("b"):
            b = _section_target(sections, m.group("b"), where)
            out += "" if b == out else f" to {anchor_of(b)}"
        for sec in _MORE.findall(m.group("more") or ""):
            out += f", {anchor_of(_section_target(sections, sec, where))}"
        return out

    text = SPEC_CITATION.sub(spec, text)
    for old, new in literals:
        text = _replace_literal(text, old, new)
    return text


def _replace_literal(text: str, old: str, new: str) -> str:
    # DESIGN.md must not match inside an already rewritten "docs/design.md" (case differs) or a longer
    # word; a bare literal is replaced only where it stands as its own token.
    pattern = re.escape(old)
    if old[0].isalnum():
        pattern = r"(?<![\w/])" + pattern
    if old[-1].isalnum():
        pattern += r"(?![\w])"
    return re.sub(pattern, lambda _m: new, text)


def _prose_spans(text: str) -> dict[int, tuple[int, bool, int]]:
    """Line number (1-based) -> (first prose column, is a comment, group) for lines inside a comment
    or a triple-quoted string (docstrings, help texts); code lines are absent. A group is one string
    token, or a run of full-line comments starting at the same column."""
    import io
    import tokenize

    spans: dict[int, tuple[int, bool, int]] = {}
    group = 0
    prev_comment: tuple[int, int] | None = None  # (line, column) of the last full-line comment
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return {}
    lines = text.split("\n")
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            full = not lines[row - 1][:col].strip()
            if not (full and prev_comment == (row - 1, col)):
                group += 1
            prev_comment = (row, col) if full else None
            spans[row] = (col + 1, True, group)
        elif tok.type == tokenize.STRING and tok.string.lstrip("rbuRBUfF")[:3] in ('"""', "'''"):
            group += 1
            first, last = tok.start[0], tok.end[0]
            prefix = len(tok.string) - len(tok.string.lstrip("rbuRBUfF"))
            spans[first] = (tok.start[1] + prefix + 3, False, group)
            for n in range(first + 1, last + 1):
                spans[n] = (0, False, group)
    return spans


_BULLET = re.compile(r"(?:[-*+]|\d+[.)])\s+")


def wrap_long_lines(text: str, changed: set[int], limit: int = LINE_LIMIT) -> tuple[str, list[int]]:
    """Re-wrap the `changed` lines (1-based) of Python source that now exceed `limit` columns.

    Prose only: inside a triple-quoted string (docstrings, help texts) or a comment. The overflow
    moves to the start of the next line of the same paragraph (which is re-wrapped in turn), or to a
    new line at the paragraph's hanging indent; an inline comment after code first moves to its own
    line above the code. Returns the new text and the lines (numbered in the new text) that came
    from `changed` lines and are still too long: code or one-line strings, left for a person.
    """
    spans = _prose_spans(text)
    L = text.split("\n")
    info: list[tuple[int, bool, int] | None] = [spans.get(i) for i in range(1, len(L) + 1)]
    mine = [i in changed for i in range(1, len(L) + 1)]
    i = 0
    while i < len(L):
        line, sp = L[i], info[i]
        if not mine[i] or len(line) <= limit or sp is None:
            i += 1
            continue
        start, is_comment, group = sp
        if is_comment and line[: start - 1].strip():  # inline comment: its own line above the code
            ws = " " * (len(line) - len(line.lstrip()))
            L[i : i + 1] = [ws + line[start - 1 :], line[: start - 1].rstrip()]
            info[i : i + 1] = [(len(ws) + 1, True, -1 - i), None]
            mine[i : i + 1] = [True, True]
            continue
        body = line[start:] if is_comment else line
        lead = len(body) - len(body.lstrip())
        bullet = _BULLET.match(body.lstrip())
        hang = lead + (bullet.end() if bullet else 0)
        indent = (" " * (start - 1) + "#" + " " * hang) if is_comment else " " * hang
        cut = line.rfind(" ", max(start, len(indent)) + 1, limit + 1)
        if cut < 0 or not line[:cut].strip() or line[:cut].rstrip().endswith(("#", '"""', "'''")):
            i += 1
            continue
        head, tail = line[:cut].rstrip(), line[cut + 1 :].strip()
        L[i] = head
        j = i + 1
        nxt = L[j] if j < len(L) else None
        same_para = (
            nxt is not None
            and info[j] is not None
            and info[j][2] == group  # type: ignore[index]
            and nxt.startswith(indent)
            and nxt[len(indent) :][:1] not in ("", " ")
            and not _BULLET.match(nxt[len(indent) :])
            and nxt.strip() not in ('"""', "'''")
        )
        if same_para:
            L[j] = indent + tail + " " + nxt[len(indent) :]  # type: ignore[index]
            mine[j] = True
        else:
            L.insert(j, indent + tail)
            info.insert(j, (len(indent) if is_comment else 0, is_comment, group))
            mine.insert(j, True)
        i += 1
    return "\n".join(L), [
        k for k, (ln, m) in enumerate(zip(L, mine, strict=True), 1) if m and len(ln) > limit
    ]


def run(
    files: Sequence[str], *, check: bool, root: Path = ROOT, report: Callable[[str], None] = print
) -> list[str]:
    """Rewrite (or with `check`, only list) `files`; returns the files that change."""
    sections, literals = load_mapping()
    changed = []
    for name in files:
        if name in EXEMPT:
            continue
        path = root / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        new = rewrite_text(text, sections, literals, where=name)
        if new != text:
            changed.append(name)
            diff = {
                i for i, (a, b) in enumerate(zip(text.split("\n"), new.split("\n"), strict=True), 1) if a != b
            }
            long_lines: list[int] = []
            if name.endswith(".py"):
                new, long_lines = wrap_long_lines(new, diff)
            report(f"{'would rewrite' if check else 'rewrote'} {name} ({len(diff)} lines)")
            for i in long_lines:
                report(f"  {name}:{i}: longer than {LINE_LIMIT} columns after the rewrite; wrap it by hand")
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="list what would change; exit 1 if anything would")
    ap.add_argument("files", nargs="*", help="files relative to the repository root (default: all tracked)")
    ns = ap.parse_args(argv)
    changed = run(ns.files or tracked_files(), check=ns.check)
    print(f"{len(changed)} file(s) {'to rewrite' if ns.check else 'rewritten'}")
    return 1 if ns.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
