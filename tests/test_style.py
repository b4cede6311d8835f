"""The tree is formatted and lint-clean under the checked-in ruff settings
(pyproject.toml [tool.ruff]): CI fails when `ruff format` would change a
file or `ruff check` finds a bug-class problem.

Fix a failure with `ruff format . && ruff check --fix .` from the checkout.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "ruff", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )


def test_the_tree_is_formatted():
  result = _ruff("format", "--check", "--diff", ".")
  assert result.returncode == 0, (
    "files not in the project's format (run `ruff format .`):\n"
    + result.stdout[-4000:]
    + result.stderr[-2000:]
  )


def test_the_tree_is_lint_clean():
  result = _ruff("check", "--output-format=concise", ".")
  assert result.returncode == 0, (
    "lint findings (run `ruff check --fix .`, then fix the rest):\n"
    + result.stdout[-4000:]
    + result.stderr[-2000:]
  )


def test_the_settings_are_two_space_and_one_line_length():
  import tomllib

  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    ruff = tomllib.load(f)["tool"]["ruff"]
  assert ruff["indent-width"] == 2
  assert ruff["line-length"] == 80
