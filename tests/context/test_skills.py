"""Agent Skills: the front-matter rules exactly, clear errors for malformed SKILL.md, progressive
disclosure, and playbook sections exported as skills (round trip, overflow into references)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lifelong.context import (
    Add,
    Delete,
    HashingEmbedder,
    MemoryStore,
    Supersede,
    TextEncodingError,
    open_store,
)
from lifelong.context.skills import (
    MAX_BODY_LINES,
    Skill,
    SkillError,
    SkillLibrary,
    _mini_yaml,
    export_playbook,
    parse_skill,
    read_skill,
    skill_bullets,
    skill_to_add,
    split_front_matter,
    validate,
    write_skill,
)

DESC = "Fill in PDF forms. Use when the user mentions PDFs, forms or form fields."


@pytest.fixture(params=["pyyaml", "fallback"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with PyYAML, and again with the built-in fallback reader (PyYAML hidden)."""
    if request.param == "fallback":
        monkeypatch.setitem(sys.modules, "yaml", None)
    return request.param


def md(front: str, body: str = "Body.\n") -> str:
    return f"---\n{front}\n---\n{body}"


def make(root: Path, folder: str, text: str | bytes) -> Path:
    d = root / folder
    d.mkdir(parents=True)
    (d / "SKILL.md").write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return d


# ---------------------------------------------------------------------- valid skills
def test_all_six_fields_round_trip(parser: str, tmp_path: Path) -> None:
    skill = Skill("pdf-forms", DESC, "# PDF forms\n\nSee [fields](references/fields.md).\n", license="Apache-2.0",
                  compatibility="Needs Python 3.11 and poppler", metadata={"author": "ops", "version": "1.2"},
                  allowed_tools=("Bash(python:*)", "Read"))
    folder = write_skill(skill, tmp_path, references={"references/fields.md": "Field names are case-sensitive."})
    back = read_skill(folder)
    assert back == skill and back.path == folder
    assert back.front_matter()["allowed-tools"] == ["Bash(python:*)", "Read"]
    # The written front matter also parses with the fallback reader (no PyYAML).
    front, _ = split_front_matter((folder / "SKILL.md").read_text())
    assert _mini_yaml((folder / "SKILL.md").read_text().split("---\n")[1]) == front


@pytest.mark.parametrize("name", ["a", "x" * 64, "pdf-2-text", "café-notes", "日本語"])
def test_valid_names(parser: str, tmp_path: Path, name: str) -> None:
    d = make(tmp_path, name, md(f"name: {name}\ndescription: {DESC}"))
    assert read_skill(d).name == name


def test_limits_are_inclusive(parser: str, tmp_path: Path) -> None:
    d = make(tmp_path, "edge", md(f"name: edge\ndescription: \"{'d' * 1024}\"\ncompatibility: \"{'c' * 500}\"",
                                   "line\n" * MAX_BODY_LINES))
    assert len(read_skill(d).description) == 1024


def test_string_allowed_tools_and_nfkc_name(parser: str, tmp_path: Path) -> None:
    # A fullwidth 'ａ' normalises (NFKC) to 'a'.
    d = make(tmp_path, "abc", md(f"name: \uff41bc\ndescription: {DESC}\nallowed-tools: Bash(git:*) Read"))
    s = read_skill(d)
    assert s.name == "abc" and s.allowed_tools == "Bash(git:*) Read"


# ---------------------------------------------------------------------- malformed skills
@pytest.mark.parametrize(("name", "folder", "fragment"), [
    ("PDF-Forms", "PDF-Forms", "must be lowercase; use 'pdf-forms'"),
    ("pdf_forms", "pdf_forms", "only letters, digits and '-' (found '_')"),
    ("pdf forms", "pdf forms", "(found ' ')"),
    ("-pdf", "-pdf", "may not start or end with '-'"),
    ("pdf-", "pdf-", "may not start or end with '-'"),
    ("pdf--forms", "pdf--forms", "may not contain '--'"),
    ("x" * 65, "x" * 65, "65 characters, over the limit of 64"),
    ("pdf-forms", "forms", "must equal its folder's name 'forms'"),
    ('""', "empty", "name is empty"),
    ("123", "123x", "name must be a string"),
])
def test_bad_names(parser: str, tmp_path: Path, name: str, folder: str, fragment: str) -> None:
    d = make(tmp_path, folder, md(f"name: {name}\ndescription: {DESC}"))
    with pytest.raises(SkillError) as err:
        read_skill(d)
    assert fragment in str(err.value)
    assert str(d / "SKILL.md") in str(err.value)


@pytest.mark.parametrize(("front", "fragment"), [
    ("name: s", "description is missing; add a 'description:' line"),
    ("name: s\ndescription: \"  \"", "description is empty"),
    (f"name: s\ndescription: \"{'d' * 1025}\"", "description has 1025 characters, over the limit of 1024"),
    ("name: s\ndescription: [a, b]", "description must be a string"),
    (f"name: s\ndescription: {DESC}\nversion: 2", "unknown field 'version'; the allowed fields are name, description"),
    (f"name: s\ndescription: {DESC}\ncompatibility: \"{'c' * 501}\"", "compatibility has 501 characters"),
    (f"name: s\ndescription: {DESC}\nmetadata:\n  version: 2", "metadata values must be strings"),
    (f"name: s\ndescription: {DESC}\nmetadata: v1", "metadata must be a map"),
    (f"name: s\ndescription: {DESC}\nallowed-tools: 3", "allowed-tools must be a space-separated string"),
    (f"name: s\ndescription: {DESC}\nlicense: [1]", "license must be a string"),
    ("name: s\ndescription: a: b: c", "not valid YAML"),
    ("- just\n- a list", "must be a YAML mapping"),
])
def test_bad_front_matter(parser: str, tmp_path: Path, front: str, fragment: str) -> None:
    d = make(tmp_path, "s", md(front))
    with pytest.raises(SkillError, match=None) as err:
        read_skill(d)
    assert fragment in str(err.value)


def test_missing_or_unclosed_front_matter_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match="there is no front matter"):
        read_skill(make(tmp_path, "a", "# Just markdown\n"))
    with pytest.raises(SkillError, match="not closed"):
        read_skill(make(tmp_path, "b", "---\nname: b\ndescription: x\n"))
    (tmp_path / "c").mkdir()
    with pytest.raises(SkillError, match="there is no SKILL.md"):
        read_skill(tmp_path / "c")


def test_oversized_body(tmp_path: Path) -> None:
    d = make(tmp_path, "big", md(f"name: big\ndescription: {DESC}", "x\n" * (MAX_BODY_LINES + 1)))
    with pytest.raises(SkillError, match="501 lines, over the 500-line guidance; move detail into files under "
                                         "references/"):
        read_skill(d)
    assert read_skill(d, max_body_lines=None).name == "big"  # the guidance can be relaxed explicitly
    d2 = make(tmp_path, "wordy", md(f"name: wordy\ndescription: {DESC}", "word " * 6000))
    with pytest.raises(SkillError, match="about 6000 tokens, over the 5000-token guidance"):
        read_skill(d2)


def test_every_problem_is_reported_at_once(parser: str, tmp_path: Path) -> None:
    d = make(tmp_path, "x", md("name: Bad--Name\nfoo: 1"))
    with pytest.raises(SkillError) as err:
        read_skill(d)
    text = str(err.value)
    for fragment in ("unknown field 'foo'", "lowercase", "may not contain '--'", "folder's name 'x'",
                     "description is missing"):
        assert fragment in text
    assert len(err.value.problems) == 5


def test_non_utf8_skill_file(tmp_path: Path) -> None:
    d = make(tmp_path, "latin", ("---\nname: latin\ndescription: Caf\u00e9 menus\n---\nBody\n").encode("latin-1"))
    with pytest.raises(TextEncodingError, match=r"not valid UTF-8 \(byte 0xe9 at position \d+\); save it as UTF-8"):
        read_skill(d)
    lib = SkillLibrary(tmp_path)
    assert lib.entries == [] and isinstance(lib.errors["latin"], TextEncodingError)
    with pytest.raises(TextEncodingError):
        SkillLibrary(tmp_path, strict=True)


def test_anthropic_platform_rules() -> None:
    problems = validate({"name": "claude-helper", "description": "Use <tool> tags"}, anthropic=True)
    assert any("'anthropic' or 'claude'" in p for p in problems)
    assert any("'<' or '>'" in p for p in problems)
    assert validate({"name": "claude-helper", "description": "ok"}) == []


def test_write_refuses_invalid_skills_and_overwrites(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match="description is empty"):
        write_skill(Skill("ok-name", ""), tmp_path)
    with pytest.raises(SkillError, match="must be relative"):
        write_skill(Skill("ok-name", DESC), tmp_path, references={"../escape.md": "x"})
    assert list(tmp_path.iterdir()) == []  # nothing written
    write_skill(Skill("ok-name", DESC, "v1"), tmp_path)
    with pytest.raises(SkillError, match="already exists; pass overwrite=True"):
        write_skill(Skill("ok-name", DESC, "v2"), tmp_path)
    write_skill(Skill("ok-name", DESC, "v2"), tmp_path, overwrite=True)
    assert read_skill(tmp_path / "ok-name").body == "v2\n"


def test_parse_bytes_and_bom() -> None:
    s = parse_skill(("\ufeff" + md(f"name: bom\ndescription: {DESC}")).encode("utf-8"), dir_name="bom")
    assert s.name == "bom"


# ---------------------------------------------------------------------- progressive disclosure
def test_progressive_disclosure(tmp_path: Path) -> None:
    write_skill(Skill("pdf-forms", DESC, "SECRET-BODY: use pdftk.\nSee references/fields.md\n"), tmp_path,
                references={"references/fields.md": "Field names are case-sensitive.", "scripts/fill.py": "print(1)"})
    write_skill(Skill("git-hygiene", "Write commit messages. Use when committing code with git.", "Imperative mood."),
                tmp_path)
    (tmp_path / "not-a-skill").mkdir()
    lib = SkillLibrary(tmp_path)
    prompt = lib.prompt()
    assert prompt.startswith("<available_skills>") and "<name>pdf-forms</name>" in prompt
    assert DESC in prompt and "SECRET-BODY" not in prompt  # level 1: no bodies
    assert str((tmp_path / "pdf-forms" / "SKILL.md").resolve()) in prompt
    assert lib.metadata_tokens() < 100 * len(lib.entries)
    assert lib.triggered("please fill this PDF form") == ["pdf-forms"]
    assert lib.triggered("commit my code") == ["git-hygiene"]
    assert lib.activate("pdf-forms").startswith("SECRET-BODY") and lib.activated == ["pdf-forms"]
    assert lib.files("pdf-forms") == ["references/fields.md", "scripts/fill.py"]
    assert lib.read_file("pdf-forms", "references/fields.md") == "Field names are case-sensitive."
    for bad in ("../git-hygiene/SKILL.md", str(tmp_path / "pdf-forms" / "SKILL.md"), "references/../../x"):
        with pytest.raises(SkillError, match="relative to the skill folder"):
            lib.read_file("pdf-forms", bad)
    with pytest.raises(SkillError, match="has no file 'references/nope.md'; its files are"):
        lib.read_file("pdf-forms", "references/nope.md")
    with pytest.raises(SkillError, match="no skill named 'pdf'; the skills are"):
        lib.activate("pdf")


def test_prompt_escapes_markup(tmp_path: Path) -> None:
    write_skill(Skill("esc", "Handles a < b & c. Use for comparisons.", "x"), tmp_path)
    assert "a &lt; b &amp; c" in SkillLibrary(tmp_path).prompt()


# ---------------------------------------------------------------------- playbook export
@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    s = open_store(str(tmp_path / "pb.db"), tenant="team", create=True, embedder=HashingEmbedder(64))
    yield s
    s.close()


def test_export_playbook_sections_round_trip(store: MemoryStore, tmp_path: Path) -> None:
    store.apply([
        Add("On 429 wait 2 s and back off exponentially", id="api-1", kind="bullet", section="API errors"),
        Add("Retry only idempotent endpoints", id="api-2", kind="bullet", section="API errors"),
        Add("Old retry rule", id="api-0", kind="bullet", section="API errors"),
        Add("Report amounts in EUR\nwith two decimals", id="fmt-1", kind="bullet", section="formatting"),
        Add("A deleted rule", id="fmt-0", kind="bullet", section="formatting"),
        Add("A note, not a bullet", id="n1", kind="note", section="formatting"),
    ])
    store.apply([Supersede(id="api-0", by="api-1"), Delete(id="fmt-0")])
    from lifelong.context import Tag
    store.apply([Tag(id="api-2", tag="helpful", count=3)])
    out = tmp_path / "skills"
    folders = export_playbook(store, out, prefix="team")
    assert [f.name for f in folders] == ["team-api-errors", "team-formatting"]
    api = read_skill(out / "team-api-errors")
    assert skill_bullets(api) == [("api-2", "Retry only idempotent endpoints"),
                                  ("api-1", "On 429 wait 2 s and back off exponentially")]
    assert skill_bullets(read_skill(out / "team-formatting")) == [("fmt-1", "Report amounts in EUR\nwith two decimals")]
    assert api.metadata == {"source": "lifelong playbook", "section": "API errors", "rules": "2", "tenant": "team"}
    assert "429" in api.description and "Use when" in api.description
    evidence = (out / "team-api-errors" / "references" / "evidence.md").read_text()
    assert "| api-2 | 3 | 0 |" in evidence
    lib = SkillLibrary(out)
    assert lib.errors == {} and len(lib.entries) == 2
    with pytest.raises(SkillError, match="no bullets in section 'nope'"):
        export_playbook(store, out, sections=["nope"])


def test_large_section_overflows_into_references(store: MemoryStore, tmp_path: Path) -> None:
    store.apply([Add(f"Rule {i}: when the payload exceeds {i} KB, stream it in chunks of {i * 4} KB", id=f"r{i:04d}",
                     kind="bullet", section="payloads") for i in range(700)])
    (folder,) = export_playbook(store, tmp_path)
    skill = read_skill(folder)  # valid: the body respects the guidance
    assert len(skill.body.splitlines()) <= MAX_BODY_LINES
    assert (folder / "references" / "more-rules.md").is_file() and "references/more-rules.md" in skill.body
    assert sorted(i for i, _ in skill_bullets(skill)) == [f"r{i:04d}" for i in range(700)]  # nothing lost


def test_skills_can_live_in_the_store(store: MemoryStore) -> None:
    skill = Skill("pdf-forms", DESC, "Use pdftk.", metadata={"v": "1"})
    store.apply([skill_to_add(skill)])
    item = store.get("skill-pdf-forms")
    assert item.kind.value == "skill" and item.meta["body"] == "Use pdftk." and item.meta["metadata"] == {"v": "1"}
    assert store.search("fill a PDF form", kinds=["skill"], k=1)[0].item.id == "skill-pdf-forms"
    assert skill_to_add(Skill("日本語", DESC)).id.startswith("skill-")


def test_awkward_strings_round_trip(parser: str, tmp_path: Path) -> None:
    desc = 'Quotes "x", colons: y, hash # z, line\u2028separator, tab\there. Use for tests.'
    folder = write_skill(Skill("awkward", desc, "b", metadata={"k: 1": "v # 2"}), tmp_path)
    back = read_skill(folder)
    assert back.description == desc and back.metadata == {"k: 1": "v # 2"}
