"""Reading task data and task definitions with their locations, so every error names file, line and field.

- :func:`iter_jsonl` yields one :class:`Record` per non-blank line of a JSON-lines file; a record's typed
  getters (``record.text("context")``) raise :class:`TaskDataError` naming the file, the line and the field.
- :func:`read_yaml` parses a YAML file and keeps each node's line (``doc.line("datasets", "qasper")``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .base import TaskDataError

_MISSING = object()


@dataclass(frozen=True)
class Record:
    """One JSON object from line ``line`` (1-based) of ``path``."""

    path: Path
    line: int
    data: dict[str, Any]

    def error(self, message: str, field: str | None = None) -> TaskDataError:
        return TaskDataError(message, self.path, self.line, field)

    def get(self, field: str, kinds: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        """``data[field]`` checked to be an instance of ``kinds``; ``default`` when absent or null (if given)."""
        value = self.data.get(field)
        if value is None:
            if default is not _MISSING:
                return default
            problem = "is missing" if field not in self.data else "is null"
            raise self.error(f"{problem} (fields present: {', '.join(sorted(self.data)) or 'none'})", field)
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.error(f"expected {_names(kinds)}, got a boolean", field)
        if not isinstance(value, kinds):
            raise self.error(f"expected {_names(kinds)}, got {type(value).__name__}", field)
        return value

    def text(self, field: str, default: Any = _MISSING) -> str:
        return self.get(field, str, default)

    def texts(self, field: str, default: Any = _MISSING, allow_empty: bool = False) -> list[str]:
        """A list of strings (``answers``, ``all_classes``)."""
        value = self.get(field, list, default)
        if value is default:
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"item {i} should be a string, got {type(item).__name__}", field)
        if not value and not allow_empty:
            raise self.error("is an empty list", field)
        return value


def _names(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join({"str": "a string", "list": "a list", "int": "an integer", "float": "a number",
                        "dict": "an object"}.get(k.__name__, k.__name__) for k in kinds)


def decode_utf8(data: bytes, path: Path, first_line: int = 1) -> str:
    """``data`` (read from ``path``, starting at line ``first_line``) as UTF-8 text; bytes that are not UTF-8
    raise :class:`TaskDataError` naming the file, the line and the column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        start = data.rfind(b"\n", 0, err.start) + 1
        raise TaskDataError(f"not UTF-8 (byte {data[err.start]:#04x} at column {err.start - start + 1}); save "
                            "the file as UTF-8", path, first_line + data.count(b"\n", 0, err.start)) from None


def iter_jsonl(path: Path) -> Iterator[Record]:
    """Records of a JSON-lines file (UTF-8), skipping blank lines; a malformed line, or one that is not
    UTF-8, raises :class:`TaskDataError` with its line number (and column)."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError("no such data file", path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = decode_utf8(raw, path, number)
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskDataError(f"malformed JSON ({err.msg} at column {err.colno})", path, number) from None
            if not isinstance(data, dict):
                raise TaskDataError(f"expected a JSON object, got {type(data).__name__}", path, number)
            yield Record(path, number, data)


def find_data_file(task: str, given: Path | None, file_name: str, benchmark: str = "") -> Path:
    """The data file of loader task ``task``: ``given`` itself if it is a file, else ``given/<file_name>``
    or ``given/<benchmark>/<file_name>``; a :class:`TaskDataError` says what was tried."""
    if given is None:
        raise TaskDataError(f"task {task!r} reads local data: set TaskContext.data_path (--data-path) to "
                            f"{file_name} or to the folder holding it")
    given = Path(given)
    if not given.is_dir():
        return given
    tried = [given / file_name] + ([given / benchmark / file_name] if benchmark else [])
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise TaskDataError(f"task {task!r}: no data file; tried {', '.join(map(str, tried))}", given)
    return found


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML file: ``data`` (plain Python) and the line of any node by its key path."""

    path: Path
    data: Any
    node: yaml.Node | None

    def line(self, *keys: str | int) -> int | None:
        """1-based line of the value at ``keys`` (the deepest existing ancestor's line if absent)."""
        node, line = self.node, None
        for key in keys:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
        return node.start_mark.line + 1 if node is not None else line

    def error(self, message: str, *keys: str | int) -> TaskDataError:
        """A :class:`TaskDataError` at ``keys`` (its last key is named as the field)."""
        return TaskDataError(message, self.path, self.line(*keys), str(keys[-1]) if keys else None)


def read_yaml(path: Path) -> YamlDoc:
    """Parse ``path`` (safe YAML); a syntax error raises :class:`TaskDataError` with the line."""
    path = Path(path)
    try:
        text = decode_utf8(path.read_bytes(), path)
    except OSError as err:
        raise TaskDataError(f"cannot read task file ({err.strerror})", path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise TaskDataError(f"malformed YAML: {problem}", path, mark.line + 1 if mark else None) from None
    return YamlDoc(path, data, node)
