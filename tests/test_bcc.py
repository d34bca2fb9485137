"""The ``bcc`` entry point (bcc.py): one line per subcommand in ``bcc --help``, each
subcommand's own ``usage: bcc X`` line, and no script path named anywhere in the top help.
Everything runs in this process."""

import re

import pytest

from breast_cancer_classifier import bcc
from breast_cancer_classifier.commands import summary

ALL = list(dict.fromkeys(["run", "single", *bcc.COMMANDS]))  # run, single: in bcc.py or not
SCRIPT_PATH = re.compile(r"src/|\.py\b")


def help_text(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        bcc.main([*argv, "--help"])
    assert exit_info.value.code == 0, f"bcc {' '.join(argv)} --help exited {exit_info.value.code}"
    return capsys.readouterr().out


def command_lines(text):
    """{command: its one-line description} from the top help's list of subcommands
    (argparse wraps long descriptions onto more lines: they are joined again)."""
    listing = text.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0]
    found, name = {}, None
    for line in listing.splitlines():
        entry = re.match(r"^    (\S+)(?:\s{2,}(.*))?$", line)
        if entry:
            name, found[entry.group(1)] = entry.group(1), (entry.group(2) or "")
        elif line.strip() and name:
            found[name] = f"{found[name]} {line.strip()}".strip()
    return found


def test_every_subcommand_has_a_one_line_description(capsys):
    text = help_text(capsys)
    lines = command_lines(text)
    assert sorted(lines) == sorted(ALL), text
    for name, module in bcc.COMMANDS.items():
        assert lines[name] == summary(module), f"bcc --help, {name}: {lines[name]!r}"
    for name, description in lines.items():
        assert len(description.split()) >= 4, f"{name}: {description!r} says too little"
        assert not description.lower().startswith("as "), f"{name}: {description!r}"


def test_top_help_names_no_script_path(capsys):
    text = help_text(capsys)
    assert not SCRIPT_PATH.search(text), text


@pytest.mark.parametrize("command", ALL)
def test_subcommand_usage_names_bcc_and_the_command(capsys, command):
    text = help_text(capsys, command)
    assert text.startswith(f"usage: bcc {command} "), text[:200]


def test_summary_reads_the_first_docstring_line_without_importing():
    import sys

    sys.modules.pop("breast_cancer_classifier.commands.demo_weights", None)
    assert summary("demo_weights") == ("Write untrained demo weights for the checkpoints "
                                       "missing from the models folder")
    assert "breast_cancer_classifier.commands.demo_weights" not in sys.modules


def test_errors_name_the_subcommand(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bcc.main(["qa", "--exam-list", str(tmp_path / "none.pkl"), "--data-folder",
                  str(tmp_path), "--output", str(tmp_path / "qa.csv")])
    assert exit_info.value.code == 2
    assert "bcc qa: error: " in capsys.readouterr().err
