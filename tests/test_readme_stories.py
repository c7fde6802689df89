"""The README's story commands are the ones the example scripts run (issue 15: "the README's commands work
exactly as written").

Every ``tufoci …`` command in a shell block of the README's "Teams and thresholds" section must be a command
that the story linked before the block (examples/STORY/run.sh) runs (and the suite runs those: tests/test_examples.py), once the
scripts' spelling is undone: the scope ``"$scope"`` is the README's ``localhost:5000/acme``, the public keys
handed over in ``shared/`` are files in the current directory, and ``start_online_service`` is the
``tufoci online-service`` command it shows (with a shorter ``--poll`` for the test).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCOPE = "localhost:5000/acme"


def _joined(lines: list[str]) -> list[str]:
    """Lines with their backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def _words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def readme_commands() -> list[tuple[str, list[str]]]:
    """(story, command) for each command of a shell block, the story being the last one linked before it."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Teams and thresholds", 1)[1].split("\n## ", 1)[0]
    commands, story = [], None
    for match in re.finditer(r"\(examples/([\w-]+)/run\.sh\)|```sh\n(.*?)```", section, re.S):
        if match.group(1):
            story = match.group(1)
            continue
        for line in _joined(match.group(2).splitlines()):
            if line.startswith("tufoci "):
                assert story is not None, f"a command before any story: {line}"
                commands.append((story, _words(line)))
    return commands


def script_commands(story: str) -> list[list[str]]:
    commands = []
    for line in _joined((REPO / "examples" / story / "run.sh").read_text().splitlines()):
        line = line.strip().replace('"$scope', f'"{SCOPE}').replace("shared/", "")
        line = re.sub(r"^start_online_service (\S+)", r"tufoci online-service \1 --every 6h --poll 1s", line)
        line = re.sub(r"^(run|expect_exit \d+|run_to \S+) ", "", line)
        if line.startswith("tufoci "):
            commands.append(_words(line))
    return commands


def test_every_readme_story_command_is_run_by_a_story():
    commands = readme_commands()
    assert {story for story, _ in commands} >= {"teams", "threshold-release", "root-threshold-from-init"}
    for story, command in commands:
        # a story may add options for the test (a shorter --poll), never drop or change the README's
        assert any(words[: len(command)] == command for words in script_commands(story)), \
            f"examples/{story}/run.sh does not run: {shlex.join(command)}"
