#!/usr/bin/env python3
"""Generate the values table of charts/ctwa-operator/README.md from values.yaml.

Usage: scripts/gen-chart-readme.py [--check | --print-values] [--chart DIR]

The table sits between the markers `<!-- values:start -->` and `<!-- values:end -->`; the rest of
the README is written by hand. `--check` changes nothing and fails when the README is out of date.
Either mode fails when a value has no description or is missing from values.schema.json, so the
README lists every value.

values.yaml convention (the helm-docs one, a subset of it):
  - `# -- text` directly above a key describes the key. The comment lines that follow continue
    the text, up to a bare `#` line; comment lines after it are notes for values.yaml readers.
  - `# @default -- text` shows `text` as the default instead of the literal value.
  - A key with a description is one row, whatever its value (a map or a list is shown as JSON).
    A map without a description is a section: each of its keys needs a description.
  - Only block maps, block lists, plain/quoted scalars and JSON-syntax flow collections
    (`{}`, `[]`, `["ALL"]`) are used; anchors, tags and multi-line scalars are not.

Plain Python 3 standard library (no PyYAML): the small YAML subset above is parsed here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

START = "<!-- values:start -->"
END = "<!-- values:end -->"


class ValuesError(Exception):
    pass


@dataclass
class Line:
    no: int
    indent: int
    text: str  # without indentation and without a trailing comment
    comments: list[str] = field(default_factory=list)  # comment lines directly above


@dataclass
class Doc:
    description: str
    default: str | None  # from `# @default --`


def strip_comment(text: str) -> str:
    """Drops a trailing ` # comment` outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def tokenize(source: str) -> list[Line]:
    lines: list[Line] = []
    pending: list[str] = []
    for no, raw in enumerate(source.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValuesError(f"line {no}: tabs in indentation")
        stripped = raw.strip()
        if not stripped:
            pending = []  # a description must sit directly above its key
            continue
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        if stripped == "---":
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        lines.append(Line(no, indent, strip_comment(stripped), pending))
        pending = []
    return lines


def parse_doc(comments: list[str]) -> Doc | None:
    start = None
    for i, c in enumerate(comments):
        if c.startswith("# --"):
            start = i  # the last `# --` block above the key counts
    if start is None:
        return None
    parts = [comments[start][4:].strip()]
    default = None
    for c in comments[start + 1 :]:
        body = c[1:].strip()
        if not body:
            break
        if body.startswith("@default --"):
            default = body[len("@default --") :].strip()
            continue
        parts.append(body)
    return Doc(" ".join(p for p in parts if p), default)


def scalar(text: str, no: int):
    if text == "" or text in ("null", "~"):
        return None
    if text[0] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValuesError(f"line {no}: flow collections must be JSON ({e})") from None
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        if not text.endswith("'") or len(text) < 2:
            raise ValuesError(f"line {no}: unterminated string")
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text):
        return float(text)
    if text[0] in "&*!|>%@`":
        raise ValuesError(f"line {no}: unsupported YAML: {text}")
    return text


KEY = re.compile(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^\s:#'"][^:#]*?)\s*:(?:\s+(.*))?$""")


class Parser:
    def __init__(self, lines: list[Line]):
        self.lines = lines
        self.i = 0
        self.docs: dict[tuple, Doc] = {}

    def peek(self) -> Line | None:
        return self.lines[self.i] if self.i < len(self.lines) else None

    def block(self, indent: int, path: tuple):
        line = self.peek()
        if line is None or line.indent < indent:
            return None
        if line.text.startswith("- ") or line.text == "-":
            return self.sequence(line.indent, path)
        return self.mapping(line.indent, path)

    def mapping(self, indent: int, path: tuple) -> dict:
        out: dict = {}
        while (line := self.peek()) is not None and line.indent >= indent:
            if line.indent > indent:
                raise ValuesError(f"line {line.no}: unexpected indentation")
            if line.text.startswith("- "):
                break
            m = KEY.match(line.text)
            if not m:
                raise ValuesError(f"line {line.no}: expected `key: value`: {line.text}")
            key = m.group(1)
            if key[0] in "\"'":
                key = scalar(key, line.no)
            if key in out:
                raise ValuesError(f"line {line.no}: duplicate key {key}")
            self.i += 1
            doc = parse_doc(line.comments)
            if doc:
                self.docs[path + (key,)] = doc
            rest = m.group(2)
            if rest is None or rest == "":
                nxt = self.peek()
                # A block list may sit at the key's own indentation.
                if nxt is not None and nxt.indent == indent and nxt.text.startswith("- "):
                    out[key] = self.sequence(indent, path + (key,))
                else:
                    out[key] = self.block(indent + 1, path + (key,))
            else:
                out[key] = scalar(rest, line.no)
        return out

    def sequence(self, indent: int, path: tuple) -> list:
        out: list = []
        while (line := self.peek()) is not None and line.indent == indent:
            if not (line.text.startswith("- ") or line.text == "-"):
                break
            item = line.text[1:].lstrip()
            if not item:
                self.i += 1
                out.append(self.block(indent + 1, path + (len(out),)))
                continue
            # `- key: value` opens a map whose further keys are indented like `key`.
            inner = indent + (len(line.text) - len(item))
            if KEY.match(item) and item[0] not in "[{\"'":
                line.indent, line.text = inner, item
                out.append(self.mapping(inner, path + (len(out),)))
            else:
                self.i += 1
                out.append(scalar(item, line.no))
        return out


def parse_values(source: str) -> tuple[dict, dict[tuple, Doc]]:
    parser = Parser(tokenize(source))
    values = parser.mapping(0, ())
    if parser.peek() is not None:
        raise ValuesError(f"line {parser.peek().no}: could not parse")
    return values, parser.docs


def rows(values: dict, docs: dict[tuple, Doc], path: tuple = ()):
    """(path, value, doc) for every documented key; fails on an undocumented value."""
    for key, value in values.items():
        p = path + (key,)
        doc = docs.get(p)
        if doc:
            yield p, value, doc
        elif isinstance(value, dict) and value:
            yield from rows(value, docs, p)
        else:
            raise ValuesError(f"value {'.'.join(p)} has no `# --` description")


def schema_has(schema: dict, path: tuple) -> bool:
    node = schema
    for key in path:
        props = node.get("properties", {})
        if key not in props:
            return False
        node = props[key]
    return True


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`" if text else '`""`'


def table(values: dict, docs: dict[tuple, Doc], schema: dict) -> str:
    out = ["| Key | Default | Description |", "| --- | --- | --- |"]
    missing = []
    for path, value, doc in rows(values, docs):
        if not schema_has(schema, path):
            missing.append(".".join(path))
        default = (
            doc.default
            if doc.default is not None
            else code(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))
        )
        out.append(f"| `{'.'.join(path)}` | {cell(default)} | {cell(doc.description)} |")
    if missing:
        raise ValuesError("not in values.schema.json: " + ", ".join(missing))
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when README.md is out of date")
    ap.add_argument(
        "--print-values",
        action="store_true",
        help="print values.yaml as this script reads it, as JSON (tests compare it with Helm's)",
    )
    ap.add_argument(
        "--chart",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "charts" / "ctwa-operator",
    )
    args = ap.parse_args()
    values_path, readme_path = args.chart / "values.yaml", args.chart / "README.md"
    try:
        values, docs = parse_values(values_path.read_text())
        schema = json.loads((args.chart / "values.schema.json").read_text())
        generated = table(values, docs, schema)
    except ValuesError as e:
        print(f"gen-chart-readme: {values_path}: {e}", file=sys.stderr)
        return 1
    if args.print_values:
        print(json.dumps(values, indent=2))
        return 0
    readme = readme_path.read_text()
    if START not in readme or END not in readme:
        print(f"gen-chart-readme: {readme_path} lacks {START} ... {END}", file=sys.stderr)
        return 1
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{START}\n{generated}{END}{tail}"
    if args.check:
        if updated != readme:
            print(
                f"gen-chart-readme: {readme_path} is out of date with values.yaml: "
                "run scripts/gen-chart-readme.py and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0
    if updated != readme:
        readme_path.write_text(updated)
        print(f"gen-chart-readme: wrote {readme_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
