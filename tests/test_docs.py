"""The documentation: every relative link resolves, nothing points outside the repository, the README stays a map."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the pages whose links are checked
LINKED = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
# every Markdown file of the project (data/local holds user data besides its own README)
MARKDOWN = sorted({*LINKED, *(ROOT / "docs").rglob("*.md"), *(ROOT / "bench").rglob("*.md")}) + [
    p for p in [ROOT / "data" / "local" / "README.md"] if p.is_file()
]
# files a user's clone has, which must not point at files only the authors had
SOURCES = [p for d in ("src", "stages") for p in sorted((ROOT / d).rglob("*")) if p.is_file()]
SCANNED = [
    *MARKDOWN,
    *(p for p in SOURCES if "__pycache__" not in p.parts),
    ROOT / "dvc.yaml",
    ROOT / "params.yaml",
]
FORBIDDEN = ("../shared", "reference-systems.md", "design.md")
README_MAX_LINES = 300

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ATTR = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            continue
        if fence is not None:
            if m and m.group(1).startswith(fence):
                fence = None
            continue
        out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation but hyphens dropped, spaces → hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = CODE_SPAN.sub(lambda c: c.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 … for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in the file's prose, as written."""
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("code", line)  # a link in inline code is not a link
        for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_ATTR):
            out += [(number, m.group(1).strip("<>")) for m in pattern.finditer(line)]
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``path``: a missing file, or an anchor no heading has."""
    problems = []
    for number, target in links(path):
        if SCHEME.match(target):
            continue  # http(s), mailto: not checked here
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return problems


def test_every_relative_link_and_image_resolves():
    missing = [str(p.relative_to(ROOT)) for p in LINKED if not p.is_file()]
    assert missing == [], "pages the README and docs link are missing"
    assert [problem for path in LINKED for problem in broken_links(path)] == []


def test_nothing_points_at_files_outside_the_repository():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {name}"
        for path in SCANNED
        for number, line in enumerate(path.read_bytes().decode("utf-8", errors="ignore").splitlines(), 1)
        for name in FORBIDDEN
        if name in line
    ]
    assert found == [], "a user's clone has none of these files"


def test_readme_is_a_map():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail to a page in docs/"


def test_the_link_check_catches_what_it_is_for(tmp_path):
    """A missing file, a missing anchor and a link inside code (ignored) in a page of their own."""
    (tmp_path / "other.md").write_text("# Title\n\n## It's a heading, too\n\n## It's a heading, too\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#its-a-heading-too) [ok](other.md#its-a-heading-too-1) [ok](#local) ![ok](other.md)\n"
        "# Local\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [bad local](#nowhere)\n"
        "`[in code](missing-too.md)`\n```\n[in a block](missing-three.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "page.md:3: missing.md: no such file",
        "page.md:3: other.md#nope: no heading with anchor #nope in other.md",
        "page.md:3: #nowhere: no heading with anchor #nowhere in page.md",
    ]
    assert slug("`efficiency.py`: what pruning buys, dense against export") == (
        "efficiencypy-what-pruning-buys-dense-against-export"
    )


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run calls the README's second set-up command, character for character."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("## Quick start") :].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and commands[1].endswith("uv run pytest")
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
