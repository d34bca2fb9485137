"""The README and docs/ against the code: every `bcc` subcommand and flag they name exists, every
relative link resolves, and the README stays short (issue 22).

A command line in a doc is a line (in a code block or an inline code span) that starts with
``bcc``, ``.venv/bin/bcc`` or ``python src/....py``; its flags are checked against that command's
own parser. An inline code span that is a flag alone (`` `--continue` ``) is checked against the
flags of every parser of the project, plus the few external tools' flags the docs quote.
"""

import argparse
import importlib
import re
from pathlib import Path

import pytest

from breast_cancer_classifier import bcc

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250  # issue 22
# Flags of other programs that the docs quote in inline code (Ray, pip, dcmtk, Orthanc, ...).
EXTERNAL_FLAGS = {"--head", "--port", "--address", "--system-site-packages", "--no-deps",
                  "--aec", "--aet", "--call", "--scan-directories", "--recurse",
                  "--headless", "--no-sandbox"}
COMMAND = re.compile(r"^(?:\$ )?(?:\.venv/bin/|\S*/)?(bcc(?=\s|$)|python3?\s+(src/\S+\.py))(.*)$")
FLAG = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")


def _options(parser):
    """Every option string of ``parser`` and of its subparsers."""
    names = set()
    for action in parser._actions:
        names.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(_options(sub))
    return names


def subcommand_parsers():
    """{subcommand: its argparse parser}, as `bcc SUBCOMMAND` parses it."""
    parser = bcc.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {}
    for name, sub in action.choices.items():
        module = bcc.COMMANDS.get(name)
        if module:
            sub = importlib.import_module(f"breast_cancer_classifier.commands.{module}").build_parser()
        parsers[name] = sub
    return parsers


def script_parser(script):
    """The parser of a script under src/ (it calls a commands module's ``main``)."""
    text = (REPO / script).read_text()
    found = re.search(r"from (breast_cancer_classifier\.commands[\w.]*) import (\w+)", text)
    if not found:
        return None
    module = importlib.import_module(found.group(1))
    target = getattr(module, found.group(2))
    module = importlib.import_module(target.__module__) if callable(target) else target
    return module.build_parser() if hasattr(module, "build_parser") else None


def _command_lines(text):
    """Command lines of a doc: code-block lines (joined over ``\\``) and inline code spans."""
    lines, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            pending += line.strip().rstrip("\\") + " "
            if not line.rstrip().endswith("\\"):
                lines.append(pending.split("#")[0].strip())
                pending = ""
        else:
            lines.extend(span.strip() for span in re.findall(r"`([^`]+)`", line))
    return lines


def _doc_commands():
    found = []
    for doc in DOCS:
        for line in _command_lines(doc.read_text()):
            match = COMMAND.match(line)
            if match:
                found.append((doc.relative_to(REPO), match.group(1), match.group(2),
                              match.group(3)))
    return found


def test_every_bcc_subcommand_and_flag_named_in_the_docs_exists():
    parsers = subcommand_parsers()
    scripts = {}
    problems, checked = [], 0
    for doc, program, script, rest in _doc_commands():
        if script:
            if not (REPO / script).is_file():
                problems.append(f"{doc}: {script} does not exist")
                continue
            parser = scripts.setdefault(script, script_parser(script))
            name = script
        else:
            words = rest.split()
            if not words or not re.fullmatch(r"[a-z][a-z0-9-]*", words[0]):
                continue  # `bcc --help`, `bcc COMMAND`, a quoted message (`bcc run: error`)
            name = words[0]
            if name not in parsers:
                problems.append(f"{doc}: `bcc {name}` is not a bcc subcommand")
                continue
            parser = parsers[name]
        if parser is None:
            continue
        options = _options(parser)
        for flag in FLAG.findall(rest):
            checked += 1
            if flag not in options:
                problems.append(f"{doc}: `{name}` has no flag {flag}")
    assert checked > 50, "the docs should show the commands' flags"
    assert not problems, "\n".join(problems)


def test_every_flag_named_alone_exists_somewhere():
    known = set(EXTERNAL_FLAGS)
    for parser in subcommand_parsers().values():
        known |= _options(parser)
    for script in REPO.glob("src/**/*.py"):
        parser = script_parser(script.relative_to(REPO))
        if parser is not None:
            known |= _options(parser)
    problems = []
    for doc in DOCS:
        for span in re.findall(r"`(--[a-z0-9][a-z0-9-]*)[^`]*`", doc.read_text()):
            if span not in known:
                problems.append(f"{doc.relative_to(REPO)}: {span} is no flag of ours")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"


def test_readme_fits_on_a_screen():
    assert len((REPO / "README.md").read_text().splitlines()) <= README_MAX_LINES
