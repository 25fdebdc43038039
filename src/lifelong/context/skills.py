"""Agent Skills: read, validate and write skill folders (``name/SKILL.md`` with YAML front matter and a
Markdown body, plus optional files such as ``references/``), disclose them progressively, and export
playbook sections as skills.

The front-matter rules follow the Agent Skills specification and its reference validator:

- exactly these keys are allowed: ``name``, ``description``, ``license``, ``compatibility``,
  ``metadata``, ``allowed-tools``; any other key is an error;
- ``name`` (required): 1-64 characters after NFKC normalisation, lowercase letters or digits (Unicode
  letters count) and ``-``, no leading or trailing ``-``, no ``--``, and equal to the folder's name;
- ``description`` (required): non-empty, at most 1,024 characters (say what the skill does and when to
  use it);
- ``compatibility`` (optional): 1-500 characters; ``metadata`` (optional): a map of strings to
  strings; ``allowed-tools`` (optional): a space-separated string or a list of strings; ``license``
  (optional): a string;
- the body should stay under 500 lines and about 5,000 tokens (detail goes to referenced files); here
  a longer body is an error by default (pass ``max_body_lines``/``max_body_tokens`` = None to relax);
- with ``anthropic=True``, the platform's extra rules: no "anthropic" or "claude" in the name, no
  ``<``/``>`` in the name or description.

Every problem is reported at once, each naming the field and the fix.

>>> skill = parse_skill('''---
... name: pdf-tools
... description: Extract text and tables from PDF files. Use when the user mentions PDFs or forms.
... ---
... # PDF tools
... Use pdfplumber for tables; see [forms](references/forms.md).
... ''', dir_name="pdf-tools")
>>> skill.name, skill.body.splitlines()[0]
('pdf-tools', '# PDF tools')
>>> parse_skill('''---
... name: PDF_Tools
... ---
... body''', dir_name="pdf-tools")
Traceback (most recent call last):
...
lifelong.context.skills.SkillError: SKILL.md is not a valid skill:
  - name 'PDF_Tools' must be lowercase; use 'pdf_tools'
  - name 'PDF_Tools' may hold only letters, digits and '-' (found '_'); replace the other characters with '-'
  - name 'PDF_Tools' must equal its folder's name 'pdf-tools'; rename the folder or the skill
  - description is missing; add a 'description:' line saying what the skill does and when to use it (at most 1024 characters)
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifelong.context._reply import keywords, slug
from lifelong.context.errors import TextEncodingError
from lifelong.context.items import Item, ItemKind, Provenance, Status, text_hash
from lifelong.context.ops import Add
from lifelong.context.text import count_tokens, query_terms
from lifelong.core.errors import LifelongError

SKILL_FILE = "SKILL.md"
ALLOWED_FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
MAX_COMPATIBILITY_CHARS = 500
MAX_BODY_LINES = 500
MAX_BODY_TOKENS = 5000
_BULLET = re.compile(r"^- \[([A-Za-z0-9][A-Za-z0-9._-]{0,127})\] (.*)$")


class SkillError(LifelongError, ValueError):
    """A SKILL.md (or a skill about to be written) breaks the rules; ``problems`` lists every one.

    >>> SkillError(["name is missing"], "x/SKILL.md").problems
    ('name is missing',)
    """

    def __init__(self, problems: Iterable[str], where: str = SKILL_FILE) -> None:
        self.problems = tuple(problems)
        self.where = where
        super().__init__(f"{where} is not a valid skill:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class Skill:
    """One skill: its front matter, its body, and (when read from disk) its folder.

    >>> s = Skill("unit-rules", "Convert units in reports. Use for any report with measurements.", "Use SI.")
    >>> print(s.to_markdown())
    ---
    name: unit-rules
    description: "Convert units in reports. Use for any report with measurements."
    ---
    Use SI.
    <BLANKLINE>
    """

    name: str
    description: str
    body: str = ""
    license: str | None = None
    compatibility: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: str | tuple[str, ...] | None = None
    path: Path | None = field(default=None, compare=False)

    def front_matter(self) -> dict[str, Any]:
        """The front matter as a plain dict (optional fields only when set)."""
        fm: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.license is not None:
            fm["license"] = self.license
        if self.compatibility is not None:
            fm["compatibility"] = self.compatibility
        if self.metadata:
            fm["metadata"] = dict(self.metadata)
        if self.allowed_tools is not None:
            fm["allowed-tools"] = self.allowed_tools if isinstance(self.allowed_tools, str) else list(self.allowed_tools)
        return fm

    def to_markdown(self) -> str:
        """SKILL.md text: YAML front matter (strings double-quoted, JSON-style, which YAML reads back
        exactly) and the body."""
        lines = ["---"]
        for key, value in self.front_matter().items():
            if key == "name":
                lines.append(f"name: {value}")
            elif isinstance(value, Mapping):
                lines.append(f"{key}:")
                lines += [f"  {_q(k)}: {_q(v)}" for k, v in value.items()]
            elif isinstance(value, list):
                lines.append(f"{key}:")
                lines += [f"  - {_q(v)}" for v in value]
            else:
                lines.append(f"{key}: {_q(value)}")
        lines.append("---")
        body = self.body if self.body.endswith("\n") or not self.body else self.body + "\n"
        return "\n".join(lines) + "\n" + body

    @property
    def location(self) -> str | None:
        """The absolute path of SKILL.md, when the skill was read from (or written to) disk."""
        return str((self.path / SKILL_FILE).resolve()) if self.path is not None else None


def _q(value: Any) -> str:
    """A YAML double-quoted scalar (JSON string syntax), with the characters YAML reads as line breaks
    escaped too.

    >>> _q('say "hi"\\u2028now')
    '"say \\\\"hi\\\\"\\\\u2028now"'
    """
    text = json.dumps(str(value), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


# ---------------------------------------------------------------------- parsing
def split_front_matter(text: str, where: str = SKILL_FILE) -> tuple[dict[str, Any], str]:
    """Split SKILL.md text into (front matter dict, body). Errors name what is wrong.

    >>> split_front_matter("---\\nname: a\\ndescription: b\\n---\\nhello\\n")
    ({'name': 'a', 'description': 'b'}, 'hello\\n')
    """
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise SkillError(["there is no front matter; SKILL.md must start with a '---' line, then the YAML "
                          "fields (name, description, ...), then another '---' line"], where)
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise SkillError(["the front matter is not closed; add a '---' line after the YAML fields"], where)
    yaml_text = "".join(lines[1:end])
    try:
        data = _load_yaml(yaml_text)
    except ValueError as err:
        raise SkillError([f"the front matter is not valid YAML ({err}); quote values that contain ': ' or "
                          "start with a special character"], where) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SkillError([f"the front matter must be a YAML mapping of fields, got {type(data).__name__}"], where)
    return data, "".join(lines[end + 1:])


def _load_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:  # PyYAML is not a core dependency
        return _mini_yaml(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(str(err).replace("\n", " ")) from None


def _mini_yaml(text: str) -> Any:
    """A fallback for the front-matter subset, used when PyYAML is not installed: ``key: scalar``, one
    level of nested ``k: v`` maps or ``- item`` lists, flow lists ``[a, b]``; scalars plain (integers,
    true/false and null typed as YAML types them) or quoted (JSON-style double quotes, or single
    quotes). Whatever it cannot read is a ValueError, as YAML would make it.

    >>> _mini_yaml('name: a\\nmetadata:\\n  "k": "v"\\ntools:\\n  - Read\\nn: 3\\nflow: [x, y]\\n')
    {'name': 'a', 'metadata': {'k': 'v'}, 'tools': ['Read'], 'n': 3, 'flow': ['x', 'y']}
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and all(ln.startswith("- ") for ln in lines):
        return [_scalar(ln[2:]) for ln in lines]
    out: dict[str, Any] = {}
    key: str | None = None
    for raw in lines:
        if raw[0] in " \t":
            if key is None:
                raise ValueError(f"indented line without a key: {raw.strip()!r}")
            s = raw.strip()
            if s.startswith("- "):
                if out[key] is None:
                    out[key] = []
                if not isinstance(out[key], list):
                    raise ValueError(f"{key!r} mixes a list item with other values")
                out[key].append(_scalar(s[2:]))
            else:
                k, sep, v = _split_key(s)
                if out[key] is None:
                    out[key] = {}
                if not isinstance(out[key], dict):
                    raise ValueError(f"{key!r} mixes a mapping with other values")
                out[key][k] = _scalar(v)
            continue
        k, sep, v = _split_key(raw)
        key = k
        out[key] = _scalar(v) if v.strip() else None
    return out


def _split_key(line: str) -> tuple[str, str, str]:
    s = line.strip()
    if s.startswith('"'):
        end = s.index('"', 1) if '"' in s[1:] else -1
        while end > 0 and s[end - 1] == "\\":
            end = s.index('"', end + 1) if '"' in s[end + 1:] else -1
        if end < 0 or not s[end + 1:].lstrip().startswith(":"):
            raise ValueError(f"expected 'key: value', got {s!r}")
        rest = s[end + 1:].lstrip()[1:]
        return json.loads(s[: end + 1]), ":", rest
    k, sep, v = s.partition(":")
    if not sep or (v and not v.startswith((" ", "\t"))):
        raise ValueError(f"expected 'key: value', got {s!r}")
    return k.strip(), sep, v


def _scalar(s: str) -> Any:
    s = s.strip()
    if s.startswith('"'):
        if len(s) < 2 or not s.endswith('"'):
            raise ValueError(f"unterminated quoted value {s!r}")
        return json.loads(s)
    if s.startswith("'"):
        if len(s) < 2 or not s.endswith("'"):
            raise ValueError(f"unterminated quoted value {s!r}")
        return s[1:-1].replace("''", "'")
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].strip()
        return [_scalar(x) for x in inner.split(",")] if inner else []
    if ": " in s or s.endswith(":"):
        raise ValueError(f"mapping values are not allowed in a plain value: {s!r} (quote it)")
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~", ""):
        return None
    return s


def validate(front: Mapping[str, Any], body: str = "", *, dir_name: str | None = None, anthropic: bool = False,
             max_body_lines: int | None = MAX_BODY_LINES, max_body_tokens: int | None = MAX_BODY_TOKENS) -> list[str]:
    """Every problem with a skill's front matter and body, each naming the field and the fix (empty
    when the skill is valid).

    >>> validate({"name": "a--b", "description": "x" * 1100, "tags": ["t"]})
    ["unknown field 'tags'; the allowed fields are name, description, license, compatibility, metadata, allowed-tools (put custom keys under metadata:)", "name 'a--b' may not contain '--'; use single hyphens", 'description has 1100 characters, over the limit of 1024; shorten it (move detail into the body)']
    """
    problems: list[str] = []
    for key in front:
        if key not in ALLOWED_FIELDS:
            problems.append(f"unknown field {key!r}; the allowed fields are {', '.join(ALLOWED_FIELDS)} "
                            "(put custom keys under metadata:)")
    name = front.get("name")
    if name is None:
        problems.append("name is missing; add a 'name:' line equal to the folder's name (lowercase letters, "
                        "digits and '-', at most 64 characters)")
    elif not isinstance(name, str):
        problems.append(f"name must be a string, got {type(name).__name__} {name!r}; quote it")
    else:
        problems += _name_problems(name, dir_name, anthropic)
    desc = front.get("description")
    if desc is None:
        problems.append("description is missing; add a 'description:' line saying what the skill does and when "
                        f"to use it (at most {MAX_DESCRIPTION_CHARS} characters)")
    elif not isinstance(desc, str):
        problems.append(f"description must be a string, got {type(desc).__name__}; quote it")
    elif not desc.strip():
        problems.append("description is empty; say what the skill does and when to use it")
    else:
        if len(desc) > MAX_DESCRIPTION_CHARS:
            problems.append(f"description has {len(desc)} characters, over the limit of {MAX_DESCRIPTION_CHARS}; "
                            "shorten it (move detail into the body)")
        if anthropic and ("<" in desc or ">" in desc):
            problems.append("description may not contain '<' or '>' (XML tags) on the Anthropic platform; "
                            "remove them")
    if "license" in front and not isinstance(front["license"], str):
        problems.append("license must be a string (a licence name, or the name of a bundled licence file)")
    if "compatibility" in front:
        comp = front["compatibility"]
        if not isinstance(comp, str) or not comp.strip():
            problems.append("compatibility must be a non-empty string describing the environment the skill needs")
        elif len(comp) > MAX_COMPATIBILITY_CHARS:
            problems.append(f"compatibility has {len(comp)} characters, over the limit of "
                            f"{MAX_COMPATIBILITY_CHARS}; shorten it")
    if "metadata" in front:
        meta = front["metadata"]
        if not isinstance(meta, Mapping):
            problems.append("metadata must be a map of string keys to string values")
        else:
            bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                problems.append(f"metadata values must be strings (quote them): {', '.join(map(repr, bad))}")
    if "allowed-tools" in front:
        tools = front["allowed-tools"]
        if not (isinstance(tools, str) or (isinstance(tools, list) and all(isinstance(t, str) for t in tools))):
            problems.append("allowed-tools must be a space-separated string or a list of strings, "
                            "e.g. 'Bash(git:*) Read'")
    if not isinstance(body, str):
        problems.append("the body must be text")
    else:
        n_lines = len(body.splitlines())
        if max_body_lines is not None and n_lines > max_body_lines:
            problems.append(f"the body has {n_lines} lines, over the {max_body_lines}-line guidance; move detail "
                            "into files under references/ and link them from the body")
        if max_body_tokens is not None:
            n_tok = count_tokens(body)
            if n_tok > max_body_tokens:
                problems.append(f"the body has about {n_tok} tokens, over the {max_body_tokens}-token guidance; "
                                "move detail into files under references/ and link them from the body")
    return problems


def _name_problems(name: str, dir_name: str | None, anthropic: bool) -> list[str]:
    out: list[str] = []
    norm = unicodedata.normalize("NFKC", name.strip())
    if not norm:
        return ["name is empty; use the folder's name (lowercase letters, digits and '-')"]
    if len(norm) > MAX_NAME_CHARS:
        out.append(f"name has {len(norm)} characters, over the limit of {MAX_NAME_CHARS}; shorten it (and the "
                   "folder's name)")
    if norm != norm.lower():
        out.append(f"name {name!r} must be lowercase; use {norm.lower()!r}")
    bad = sorted({c for c in norm if not (c.isalnum() or c == "-")})
    if bad:
        out.append(f"name {name!r} may hold only letters, digits and '-' (found {''.join(bad)!r}); replace the "
                   "other characters with '-'")
    if norm.startswith("-") or norm.endswith("-"):
        out.append(f"name {name!r} may not start or end with '-'")
    if "--" in norm:
        out.append(f"name {name!r} may not contain '--'; use single hyphens")
    if dir_name is not None and unicodedata.normalize("NFKC", dir_name) != norm:
        out.append(f"name {name!r} must equal its folder's name {dir_name!r}; rename the folder or the skill")
    if anthropic:
        if "anthropic" in norm or "claude" in norm:
            out.append(f"name {name!r} may not contain 'anthropic' or 'claude' on the Anthropic platform")
        if "<" in norm or ">" in norm:
            out.append(f"name {name!r} may not contain '<' or '>'")
    return out


def parse_skill(text: str | bytes, *, dir_name: str | None = None, where: str = SKILL_FILE,
                path: Path | None = None, **rules: Any) -> Skill:
    """Parse and validate SKILL.md text (``rules``: the keyword options of :func:`validate`); a
    :class:`SkillError` lists every problem. Bytes must be UTF-8.

    >>> parse_skill(b"---\\nname: tidy\\ndescription: Tidy imports. Use on Python files.\\n---\\nSort them.").name
    'tidy'
    >>> parse_skill("---\\nname: tidy\\n---\\n", dir_name="tidy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lifelong.context.skills.SkillError: SKILL.md is not a valid skill:
      - description is missing; add a 'description:' line ...
    """
    if isinstance(text, bytes | bytearray):
        text = _decode(bytes(text), where)
    front, body = split_front_matter(text, where)
    problems = validate(front, body, dir_name=dir_name, **rules)
    if problems:
        raise SkillError(problems, where)
    tools = front.get("allowed-tools")
    return Skill(
        name=unicodedata.normalize("NFKC", front["name"].strip()), description=front["description"], body=body,
        license=front.get("license"), compatibility=front.get("compatibility"),
        metadata=dict(front.get("metadata") or {}),
        allowed_tools=tuple(tools) if isinstance(tools, list) else tools, path=path,
    )


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextEncodingError(
            f"{where} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at position {err.start}); save it as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def read_skill(folder: str | os.PathLike[str], **rules: Any) -> Skill:
    """Read and validate ``folder/SKILL.md`` (the folder's name must equal the skill's name).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "greeter"
    >>> _ = write_skill(Skill("greeter", "Greets people. Use when a user says hello.", "Say hi."), d.parent)
    >>> read_skill(d).body
    'Say hi.\\n'
    """
    folder = Path(folder)
    f = folder / SKILL_FILE
    if not f.is_file():
        raise SkillError([f"there is no {SKILL_FILE} in {folder}; a skill is a folder holding SKILL.md"], str(f))
    return parse_skill(f.read_bytes(), dir_name=folder.name, where=str(f), path=folder, **rules)


def write_skill(skill: Skill, parent: str | os.PathLike[str], *, references: Mapping[str, str] | None = None,
                overwrite: bool = False, **rules: Any) -> Path:
    """Validate ``skill`` and write it to ``parent/<name>/SKILL.md``, plus ``references`` (relative path
    -> text, e.g. ``{"references/evidence.md": ...}``). Nothing is written when the skill is invalid or
    (without ``overwrite``) when the folder already holds a SKILL.md.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> folder = write_skill(Skill("tidy", "Tidy imports. Use on Python files.", "Sort them."), root,
    ...                      references={"references/style.md": "isort profile black"})
    >>> sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    ['SKILL.md', 'references/style.md']
    >>> write_skill(Skill("Bad Name", "x"), root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lifelong.context.skills.SkillError: skill 'Bad Name' is not a valid skill:
      - name 'Bad Name' must be lowercase; use 'bad name'
      - name 'Bad Name' may hold only letters, digits and '-' (found ' '); replace the other characters with '-'
    """
    problems = validate(skill.front_matter(), skill.body, **rules)
    for rel in references or {}:
        problems += _relpath_problems(rel)
    if problems:
        raise SkillError(problems, f"skill {skill.name!r}")
    folder = Path(parent) / skill.name
    if (folder / SKILL_FILE).exists() and not overwrite:
        raise SkillError([f"{folder / SKILL_FILE} already exists; pass overwrite=True to replace it"],
                         f"skill {skill.name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for rel, text in (references or {}).items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (folder / SKILL_FILE).write_text(skill.to_markdown(), encoding="utf-8")
    return folder


def _relpath_problems(rel: str) -> list[str]:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return [f"file path {rel!r} must be relative to the skill folder, without '..'"]
    if p.name == SKILL_FILE and len(p.parts) == 1:
        return [f"file path {rel!r} would overwrite SKILL.md"]
    return []


# ---------------------------------------------------------------------- progressive disclosure
@dataclass(frozen=True)
class SkillEntry:
    """Level 1 of disclosure: what is always in context about a skill (name, description, location).

    >>> SkillEntry("a", "does a", "/s/a/SKILL.md").name
    'a'
    """

    name: str
    description: str
    location: str


class SkillLibrary:
    """The skills found in one or more folders (each skill a sub-folder holding SKILL.md), disclosed in
    three levels: :meth:`prompt` lists names and descriptions; :meth:`activate` returns a skill's body
    when it triggers; :meth:`read_file` returns a referenced file on demand. Invalid skills are left
    out and their errors kept in ``errors`` (or raised, with ``strict=True``).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_skill(Skill("csv-cleaning", "Clean CSV files: encodings, delimiters. Use for CSV imports.",
    ...                       "Detect the delimiter first. See references/encodings.md."), root,
    ...                 references={"references/encodings.md": "Try utf-8, then cp1252."})
    >>> (root / "Bad").mkdir(); _ = (root / "Bad" / "SKILL.md").write_text("---\\nname: Bad\\n---\\n")
    >>> lib = SkillLibrary(root)
    >>> [e.name for e in lib.entries], sorted(lib.errors)
    (['csv-cleaning'], ['Bad'])
    >>> lib.triggered("import this CSV file please")
    ['csv-cleaning']
    >>> lib.activate("csv-cleaning").startswith("Detect the delimiter")
    True
    >>> lib.read_file("csv-cleaning", "references/encodings.md")
    'Try utf-8, then cp1252.'
    """

    def __init__(self, roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, strict: bool = False,
                 **rules: Any) -> None:
        if isinstance(roots, str | os.PathLike):
            roots = [roots]
        self.rules = rules
        self.errors: dict[str, SkillError | TextEncodingError] = {}
        self._skills: dict[str, Skill] = {}
        self.activated: list[str] = []
        for root in roots:
            for folder in sorted(Path(root).iterdir()):
                if not (folder / SKILL_FILE).is_file():
                    continue
                try:
                    skill = read_skill(folder, **rules)
                except (SkillError, TextEncodingError) as err:
                    if strict:
                        raise
                    self.errors[folder.name] = err
                    continue
                if skill.name in self._skills:
                    err = SkillError([f"a skill named {skill.name!r} was already found in "
                                      f"{self._skills[skill.name].path}; skill names must be unique"], str(folder))
                    if strict:
                        raise err
                    self.errors[folder.name] = err
                    continue
                self._skills[skill.name] = skill

    @property
    def entries(self) -> list[SkillEntry]:
        """Level 1: every valid skill's name, description and SKILL.md location, by name."""
        return [SkillEntry(s.name, s.description, s.location or "") for s in sorted(self._skills.values(),
                                                                                    key=lambda s: s.name)]

    def prompt(self) -> str:
        """The ``available_skills`` block for a system prompt (HTML-escaped)."""
        rows = [f"<skill>\n<name>{html.escape(e.name)}</name>\n<description>{html.escape(e.description)}"
                f"</description>\n<location>{html.escape(e.location)}</location>\n</skill>" for e in self.entries]
        return "<available_skills>\n" + "\n".join(rows) + ("\n" if rows else "") + "</available_skills>"

    def metadata_tokens(self) -> int:
        """Tokens the level-1 block costs (about 100 per skill is the design point)."""
        return count_tokens(self.prompt())

    def triggered(self, text: str, *, min_overlap: int = 1) -> list[str]:
        """Skills whose name or description shares at least ``min_overlap`` content words with ``text``,
        most overlap first (a deterministic trigger; a model may choose from :meth:`prompt` instead)."""
        from lifelong.context._reply import STOPWORDS

        q = {t for t in query_terms(text) if t not in STOPWORDS}
        scored = []
        for e in self.entries:
            words = {t for t in query_terms(f"{e.name.replace('-', ' ')} {e.description}") if t not in STOPWORDS}
            n = len(q & words)
            if n >= min_overlap:
                scored.append((-n, e.name))
        return [name for _, name in sorted(scored)]

    def get(self, name: str) -> Skill:
        """A skill by name; KeyError-like :class:`SkillError` naming the skills there are."""
        if name not in self._skills:
            raise SkillError([f"no skill named {name!r}; the skills are {sorted(self._skills) or 'none'}"], name)
        return self._skills[name]

    def activate(self, name: str) -> str:
        """Level 2: a skill's body, when it triggers (recorded in ``activated``)."""
        skill = self.get(name)
        self.activated.append(name)
        return skill.body

    def files(self, name: str) -> list[str]:
        """The files a skill bundles besides SKILL.md (relative paths, sorted)."""
        skill = self.get(name)
        assert skill.path is not None
        top = skill.path / SKILL_FILE
        return sorted(p.relative_to(skill.path).as_posix() for p in skill.path.rglob("*") if p.is_file() and p != top)

    def read_file(self, name: str, relpath: str) -> str:
        """Level 3: a file the skill references, by a path relative to its folder (no absolute paths, no
        ``..``, no links out of the folder). Must be UTF-8 text."""
        skill = self.get(name)
        assert skill.path is not None
        problems = _relpath_problems(relpath)
        if problems:
            raise SkillError(problems, f"skill {name!r}")
        base = skill.path.resolve()
        target = (skill.path / relpath).resolve()
        if base not in target.parents:
            raise SkillError([f"{relpath!r} resolves outside the skill folder"], f"skill {name!r}")
        if not target.is_file():
            raise SkillError([f"skill {name!r} has no file {relpath!r}; its files are {self.files(name)}"],
                             f"skill {name!r}")
        return _decode(target.read_bytes(), str(target))


# ---------------------------------------------------------------------- store and playbook
def skill_to_add(skill: Skill, *, id: str | None = None) -> Add:
    """The ADD that stores a skill in a memory store (kind ``skill``; content = the description, so
    searching finds skills by what they are for; the front matter and body in ``meta``).

    >>> skill_to_add(Skill("a-b", "Does things.", "Body.")).meta["name"]
    'a-b'
    """
    if id is None:
        id = f"skill-{skill.name}" if _ascii_id(skill.name) else f"skill-{text_hash(skill.name)[:16]}"
    return Add(skill.description, id=id[:128],
               kind=ItemKind.SKILL, section="skills",
               meta={**skill.front_matter(), "body": skill.body}, provenance=Provenance(source="skill", trust="user"),
               justification=f"skill {skill.name!r}", proposer="skills")


def _ascii_id(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9-]*", name))


def skill_bullets(skill: Skill) -> list[tuple[str, str]]:
    """The ``- [id] content`` bullets of an exported playbook skill, in order (its body, then
    ``references/more-rules.md`` when the body overflowed into it); continuation lines are indented.

    >>> skill_bullets(Skill("x", "y", "# t\\n- [r1] Wait 2 s\\n  on 429.\\n- [r2] Use SI\\n"))
    [('r1', 'Wait 2 s\\non 429.'), ('r2', 'Use SI')]
    """
    texts = [skill.body]
    if skill.path is not None and (skill.path / "references" / "more-rules.md").is_file():
        texts.append((skill.path / "references" / "more-rules.md").read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []
    for text in texts:
        current: list[str] | None = None
        for line in text.splitlines():
            m = _BULLET.match(line)
            if m:
                out.append((m.group(1), m.group(2)))
                current = [m.group(2)]
            elif current is not None and line.startswith("  "):
                current.append(line[2:])
                out[-1] = (out[-1][0], "\n".join(current))
            else:
                current = None
    return out


def _bullet_line(item: Item) -> str:
    first, *rest = item.content.split("\n")
    return "\n".join([f"- [{item.id}] {first}", *(f"  {r}" for r in rest)])


def playbook_sections(items: Iterable[Item]) -> dict[str, list[Item]]:
    """Current, active bullets grouped by section (sections sorted), best utility first within each.

    >>> from lifelong.context.items import Item
    >>> groups = playbook_sections([Item(id="a", content="x", kind="bullet", section="api", harmful=2),
    ...                             Item(id="b", content="y", kind="bullet", section="api"), Item(id="n", content="z")])
    >>> {s: [i.id for i in v] for s, v in groups.items()}
    {'api': ['b', 'a']}
    """
    groups: dict[str, list[Item]] = {}
    for it in items:
        if it.kind is ItemKind.BULLET and it.status is Status.ACTIVE and it.superseded_by is None \
                and it.valid_until is None:
            groups.setdefault(it.section, []).append(it)
    return {s: sorted(v, key=lambda i: (-i.utility, -i.helpful, i.id)) for s, v in sorted(groups.items())}


def playbook_skill(section: str, bullets: Sequence[Item], *, prefix: str = "",
                   max_body_lines: int = MAX_BODY_LINES, max_body_tokens: int = MAX_BODY_TOKENS,
                   source: str = "") -> tuple[Skill, dict[str, str]]:
    """One playbook section as a skill and its reference files: the bullets in the body (best first,
    each with its id); bullets that would push the body past the size guidance go to
    ``references/more-rules.md``, which the body links; ``references/evidence.md`` holds each bullet's
    counters and provenance.

    >>> from lifelong.context.items import Item
    >>> sk, refs = playbook_skill("API errors", [Item(id="r1", content="On 429 wait 2 s", kind="bullet")])
    >>> sk.name, sorted(refs)
    ('api-errors', ['references/evidence.md'])
    """
    name = _skill_name(prefix, section)
    kws = keywords(" ".join(b.content for b in bullets), 8)
    desc = (f"Rules learned from experience for {section!r}" + (f" ({', '.join(kws)})" if kws else "")
            + f". Use when a task involves {section}.")
    if len(desc) > MAX_DESCRIPTION_CHARS:
        desc = desc[: MAX_DESCRIPTION_CHARS - 3].rsplit(" ", 1)[0] + "..."
    head = [f"# {section}", "", "Rules learned from experience, most useful first; cite a rule by its id.", ""]
    tail = ["", "Counters and sources for every rule: [references/evidence.md](references/evidence.md)."]
    more_note = "More rules, less proven: [references/more-rules.md](references/more-rules.md)."
    body_lines: list[str] = []
    overflow: list[str] = []
    budget_lines = max_body_lines - len(head) - len(tail) - 2
    budget_tokens = max_body_tokens - count_tokens("\n".join(head + tail + [more_note])) - 8
    used_tokens = 0
    for b in bullets:
        line = _bullet_line(b)
        n_lines, n_tok = line.count("\n") + 1, count_tokens(line) + 1
        if not overflow and len(body_lines) + n_lines <= budget_lines and used_tokens + n_tok <= budget_tokens:
            body_lines.append(line)
            used_tokens += n_tok
        else:
            overflow.append(line)
    body = "\n".join(head + body_lines + ([more_note] if overflow else []) + tail) + "\n"
    rows = ["# Evidence", "", "| id | helpful | harmful | source | episode |", "|---|---|---|---|---|"]
    rows += [f"| {b.id} | {b.helpful} | {b.harmful} | {_cell(b.provenance.source)} | "
             f"{_cell(b.provenance.episode or '')} |" for b in bullets]
    refs = {"references/evidence.md": "\n".join(rows) + "\n"}
    if overflow:
        refs["references/more-rules.md"] = f"# {section}: more rules\n\n" + "\n".join(overflow) + "\n"
    meta = {"source": "lifelong playbook", "section": section, "rules": str(len(bullets))}
    if source:
        meta["tenant"] = source
    return Skill(name, desc, body, metadata=meta), refs


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _skill_name(prefix: str, section: str) -> str:
    base = slug(f"{prefix} {section}" if prefix else section, MAX_NAME_CHARS)
    base = re.sub(r"-{2,}", "-", base).strip("-")
    return base or "playbook"


def export_playbook(store: Any, out_dir: str | os.PathLike[str], *, sections: Sequence[str] | None = None,
                    prefix: str = "", overwrite: bool = False) -> list[Path]:
    """Write each playbook section of ``store`` (current bullets) as a skill folder under ``out_dir``;
    returns the folders. Every skill is validated before anything is written.

    >>> import tempfile
    >>> from lifelong.context import open_store, HashingEmbedder, Add
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(32))
    >>> _ = s.apply([Add("On 429 wait 2 s", id="r1", kind="bullet", section="api"),
    ...              Add("Report in SI units", id="u1", kind="bullet", section="style")])
    >>> out = Path(tempfile.mkdtemp())
    >>> [p.name for p in export_playbook(s, out)]
    ['api', 'style']
    >>> skill_bullets(read_skill(out / "api"))
    [('r1', 'On 429 wait 2 s')]
    """
    groups = playbook_sections(store.items())
    if sections is not None:
        missing = [s for s in sections if s not in groups]
        if missing:
            raise SkillError([f"no bullets in section {m!r}; the sections are {sorted(groups)}" for m in missing],
                             "export")
        groups = {s: groups[s] for s in sections}
    built = [playbook_skill(sec, items, prefix=prefix, source=getattr(store, "tenant", "")) for sec, items in
             groups.items()]
    names = [s.name for s, _ in built]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SkillError([f"sections map to the same skill name {d!r}; rename a section or export them separately"
                          for d in dupes], "export")
    problems = [p for s, _ in built for p in validate(s.front_matter(), s.body)]
    if problems:
        raise SkillError(problems, "export")
    return [write_skill(s, out_dir, references=refs, overwrite=overwrite) for s, refs in built]


__all__ = [
    "ALLOWED_FIELDS", "Skill", "SkillEntry", "SkillError", "SkillLibrary", "export_playbook", "parse_skill",
    "playbook_sections", "playbook_skill", "read_skill", "skill_bullets", "skill_to_add", "split_front_matter",
    "validate", "write_skill",
]
