"""A config file's fields for `--help`: name, value and meaning.

The meanings are the comments next to (or right above) each `config.x = ...`
line of the config file and of the config files it builds on (`from configs
import default`); the file that defines a field first (the base) wins.
Needs only ml_collections, so `--help` stays fast.
"""

from __future__ import annotations

import difflib
import importlib.util
import io
import os
import re
import sys
import textwrap
import tokenize

import ml_collections

_ASSIGNMENT = re.compile(r"^\s*config((?:\.\w+)+)\s*=")
_IMPORT = re.compile(r"^\s*from\s+configs\s+import\s+(\w+)")


def load(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, as `--config` loads it (the config
  files' own `from configs import ...` needs the repository on sys.path)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.append(root)
  spec = importlib.util.spec_from_file_location("_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def fields(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{dotted name: value} of every leaf field."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(fields(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _base_files(path: str, seen: set) -> list[str]:
  """The config files `path` imports from configs/ (bases first), then it."""
  if path in seen or not os.path.exists(path):
    return []
  seen.add(path)
  files = []
  with open(path) as f:
    for line in f:
      match = _IMPORT.match(line)
      if match:
        base = os.path.join(os.path.dirname(path), f"{match.group(1)}.py")
        files += _base_files(base, seen)
  return files + [path]


def _comments(path: str) -> dict:
  """{dotted name: comment} of one file: the comment on the assignment's
  line, else the comment lines right above it."""
  with open(path) as f:
    source = f.read()
  by_line = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      by_line[token.start[0]] = token.string.lstrip("#").strip()
  lines = source.splitlines()
  out = {}
  for number, line in enumerate(lines, 1):
    match = _ASSIGNMENT.match(line)
    if not match:
      continue
    name = match.group(1)[1:]
    if number in by_line and not line.lstrip().startswith("#"):
      out.setdefault(name, by_line[number])
      continue
    block, above = [], number - 1
    while above in by_line and lines[above - 1].lstrip().startswith("#"):
      block.insert(0, by_line[above])
      above -= 1
    if block:
      out.setdefault(name, " ".join(block))
  return out


def meanings(path: str) -> dict:
  """{dotted name: meaning} from `path` and the config files it builds on.

  A field without a comment of its own, e.g. one given inside a dict
  (`config.x = ConfigDict({"a": 1})`), takes the meaning of its
  closest section that has one.
  """
  notes = {}
  for file in _base_files(os.path.abspath(path), set()):
    for name, text in _comments(file).items():
      notes.setdefault(name, text)
  out = {}
  for name in fields(load(path)):
    section = name
    while section not in notes and "." in section:
      section = section.rsplit(".", 1)[0]
    if section in notes:
      out[name] = notes[section]
  return out


def describe(path: str, width: int = 80) -> str:
  """The fields of the config file `path`, each with its value and meaning."""
  config = load(path)
  notes = meanings(path)
  lines = [f"Fields of {path} (override any with --config.<name>=<value>):"]
  for name, value in fields(config).items():
    lines.append(f"  {name} = {value!r}")
    note = notes.get(name)
    if note:
      lines += textwrap.wrap(
        note, width, initial_indent="      ", subsequent_indent="      "
      )
  return "\n".join(lines)


def unknown_field(path: str, names) -> str | None:
  """A one-line message for the first of `names` (dotted) that the config
  file lacks, naming the closest field; None if all exist."""
  known = fields(load(path))
  sections = {n.rsplit(".", 1)[0] for n in known if "." in n}
  for name in names:
    if name in known or name in sections:
      continue
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"did you mean --config.{close[0]}? " if close else ""
    return (
      f"--config.{name}: {path} has no field {name!r}; {hint}"
      f"`--config {path} --help` lists its fields"
    )
  return None
