"""The documentation against the code: every `aps ...` command line quoted in README.md and
docs/*.md names a command and options that exist, and every relative link points to a file
(and, with `#anchor`, to a heading of that page).

Command lines are taken from fenced code blocks (one per line, `\\` continuations joined, `#`
comments dropped) and from inline code spans whose first word is `aps` or `.venv/bin/aps`.
A line may hold several commands: `aps tenants list | aps tenants remove acme` checks both;
a shell pipe into another program (`aps usage --csv | head`) checks only the `aps` part.
Within a word, `a|b` lists alternatives (`aps bench core|sim`); `[...]` marks optional parts;
an upper-case word (NAME, FILE) or `...` is a placeholder: as an argument it stands for any
value, in place of a sub-command for any sub-command.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import typer

from aps.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = {"aps", ".venv/bin/aps", "./.venv/bin/aps"}
SEPARATORS = {"|", "||", "&&", ";"}
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass
class Quote:
    path: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text}"


# --- finding the command lines ----------------------------------------------------------------

def split_fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(code lines, prose lines), each as (line number, text)."""
    code, prose, fenced = [], [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append((number, line))
    return code, prose


def tokens(text: str) -> list[str]:
    """Shell words, comments dropped; `|` only as a word of its own separates commands."""
    text = re.sub(r"(^|\s)#.*$", "", text)
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose
        return text.split()


def commands(text: str) -> list[list[str]]:
    """The `aps` commands in one line of text, each as its words after the program name."""
    found, current = [], []
    for word in tokens(text) + ["|"]:
        if word in SEPARATORS:
            if len(current) > 1 and current[0] in PROGRAMS:  # a bare `aps` is the policy
                found.append(current[1:])
            current = []
        else:
            current.append(word)
    return found


def starts_with_program(text: str) -> bool:
    words = text.split(maxsplit=2)
    return len(words) > 1 and words[0] in PROGRAMS


def code_quotes(path: Path, lines: list[tuple[int, str]]) -> list[Quote]:
    quotes, pending, start = [], "", 0
    for number, line in lines:
        if not pending:
            start = number
        stripped = re.sub(r"^\s*\$\s+", "", line).strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        whole, pending = pending + stripped, ""
        if starts_with_program(whole):
            quotes.append(Quote(path, start, whole))
    return quotes


def inline_quotes(path: Path, lines: list[tuple[int, str]]) -> list[Quote]:
    """Inline code spans starting with `aps`; a span may run over a line break."""
    quotes = []
    numbers = [number for number, _ in lines]
    text = "\n".join(line for _, line in lines)
    for match in INLINE.finditer(text):
        span = " ".join(match.group(1).split())
        if starts_with_program(span):
            quotes.append(Quote(path, numbers[text.count("\n", 0, match.start())], span))
    return quotes


def quoted_commands(path: Path) -> list[Quote]:
    code, prose = split_fences(path.read_text())
    return code_quotes(path, code) + inline_quotes(path, prose)


# --- resolving them against the CLI -----------------------------------------------------------

def is_placeholder(word: str) -> bool:
    return word == "..." or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\.\.)?", word))


def option_names(command) -> dict[str, bool]:
    """Each option of a command (`--x` and `--no-x` forms) -> whether it takes a value."""
    names = {"--help": False}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for name in [*param.opts, *param.secondary_opts]:
            names[name] = takes_value
    return names


@cache
def root_command():
    """The click command behind the typer app (typer may bundle its own click: no isinstance)."""
    return typer.main.get_command(app)


def subcommands(command) -> dict:
    return getattr(command, "commands", None) or {}


def check(words: list[str], command=None, path: str = "aps") -> list[str]:
    """What in `aps WORDS` does not exist (empty when everything does)."""
    command = root_command() if command is None else command
    problems = []
    words = [w.strip("[]") for w in words]
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word:
            continue
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            options = option_names(command)
            for alternative in name.split("|"):
                if alternative not in options:
                    problems.append(f"`{path}` has no option {alternative}")
            if "=" not in word and options.get(name) and i < len(words) \
                    and not words[i].startswith("-"):
                i += 1  # the option's value
            continue
        if word.startswith("-"):
            continue  # a short option: the CLI defines none, nothing to check against
        children = subcommands(command)
        if not children:
            continue  # an argument of a command
        rest = words[i:]
        if is_placeholder(word):
            # any sub-command: each option that follows must exist in at least one of them
            for sub, child in children.items():
                if not check(rest, child, f"{path} {sub}"):
                    return problems
            return problems + [f"no sub-command of `{path}` accepts `{' '.join(rest)}`"]
        for alternative in word.split("|"):
            if alternative not in children:
                problems.append(f"`{path}` has no sub-command {alternative!r} "
                                f"(it has: {', '.join(sorted(children))})")
            else:
                problems += check(rest, children[alternative], f"{path} {alternative}")
        return problems
    return problems


# --- the tests --------------------------------------------------------------------------------

def all_quotes() -> list[Quote]:
    return [quote for path in DOCS for quote in quoted_commands(path)]


def test_docs_quote_enough_command_lines():
    quotes = all_quotes()
    found = sum(len(commands(q.text)) for q in quotes)
    assert found >= 20, f"only {found} `aps` command lines found in {[str(p) for p in DOCS]}"


@pytest.mark.parametrize("quote", all_quotes(), ids=lambda q: q.where()[:90])
def test_quoted_command_exists(quote: Quote):
    problems = [p for words in commands(quote.text) for p in check(words)]
    assert not problems, f"{quote.where()}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("line, ok", [
    ("aps simulate vtc-lmsys --policy vtc --json out.json", True),
    ("aps simulate FILE --no-autoscale --replicas N", True),
    ("aps simulate --no-such-option", False),
    ("aps simulate x --autoscale=false --no-step", False),
    ("aps serve [--config FILE] [--host] [--port]", True),
    ("aps tenants list | aps tenants remove acme", True),
    ("aps tenants list | aps tenants drop acme", False),
    ("aps usage --csv | head -3", True),
    ("aps usage --since 24h export --trace t.csv", True),
    ("aps usage export --csv", False),
    ("aps bench core|sim|upstream --json", True),
    ("aps bench core|nope", False),
    ("aps tenants ... --db x.db", True),
    ("aps tenants ... --weight 2", True),
    ("aps keys ... --weight 2", False),
    ("aps simulate x # then --no-such-option", True),
    (".venv/bin/aps frobnicate", False),
])
def test_checker(line: str, ok: bool):
    found = commands(line)
    assert found, line
    problems = [p for words in found for p in check(words)]
    assert (not problems) == ok, (line, problems)


def test_extraction_from_markdown(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("Run `aps simulate x --policy vtc` or `--policy` alone, and\n"
                    "`aps usage\n--since 7d`.\n\n```sh\n"
                    ".venv/bin/aps simulate y \\\n    --requests 5   # a comment --bad\n"
                    "make test\n```\n")
    assert [q.text for q in quoted_commands(page)] == [
        ".venv/bin/aps simulate y --requests 5   # a comment --bad",
        "aps simulate x --policy vtc", "aps usage --since 7d"]
    assert [q.line for q in quoted_commands(page)] == [6, 1, 2]


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of each link that is not a URL, outside code."""
    _, prose = split_fences(path.read_text())
    links = []
    for number, line in prose:
        for target in LINK.findall(INLINE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                links.append((number, target))
    return links


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings."""
    _, prose = split_fences(path.read_text())
    found = set()
    for _, line in prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = heading.group(1).lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def broken(path: Path, target: str) -> str | None:
    """What is wrong with a link from `path` to `target`, or None."""
    file, _, anchor = target.partition("#")
    dest = (path.parent / file) if file else path
    if not dest.exists():
        return "no such file"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"no heading #{anchor} in {dest.name}"
    return None


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files(path: Path):
    problems = [f"{path.relative_to(ROOT)}:{number}: {target}: {why}"
                for number, target in relative_links(path)
                if (why := broken(path, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_link_checker(tmp_path: Path):
    (tmp_path / "a.md").write_text("# Page A\n\n## The `aps serve` part\n\nSee [b](b.md), "
                                   "[gone](gone.md), [part](#the-aps-serve-part), [x](#nope) "
                                   "and [web](https://example.com); `[not](a link)`.\n")
    (tmp_path / "b.md").write_text("# B\n")
    page = tmp_path / "a.md"
    assert [t for _, t in relative_links(page)] == ["b.md", "gone.md", "#the-aps-serve-part",
                                                    "#nope"]
    assert [broken(page, t) for _, t in relative_links(page)] == [
        None, "no such file", None, "no heading #nope in a.md"]


REPO_PATH = re.compile(r"`((?:aps|tests|scripts|benchmarks|notebooks|data|docs)/[\w./-]*\w)`")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_repository_paths_exist(path: Path):
    """A file or folder of this repository quoted in the docs (`aps/core/...`) exists."""
    missing = [f"{path.relative_to(ROOT)}:{number}: {quoted}"
               for number, line in enumerate(path.read_text().splitlines(), 1)
               for quoted in REPO_PATH.findall(line) if not (ROOT / quoted).exists()]
    assert not missing, "quoted paths that do not exist:\n" + "\n".join(missing)
