"""CI runs exactly the README's test command, and that command lints and format-checks first."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_command_with_ruff_before_the_tests() -> None:
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command in (ROOT / "README.md").read_text(), "the README's test command and .ci/run differ"
    steps = [s.strip() for s in command.split("&&")]
    assert "python -m ruff check ." in steps and "python -m ruff format --check ." in steps
    first_test = next(i for i, s in enumerate(steps) if "pytest" in s)
    assert steps.index("python -m ruff check .") < first_test
    assert steps.index("python -m ruff format --check .") < first_test
