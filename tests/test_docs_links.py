"""The Markdown pages (README, docs/, recipes/, benchmarks/) point at things that exist: every
relative link and image names a file of the repository, every #anchor a heading of the page it
names (GitHub's heading ids), and every `--setting NAME` a setting of a recipe."""
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"work", "runs", "build", "dist", "node_modules"}  # outputs, not pages
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def pages():
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]  # .venv, .git
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


def prose(path):
    """The page without fenced code blocks and inline code, where a link is not a link."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path):
    """GitHub's ids of the page's headings: lower case, punctuation dropped (letters of any script,
    digits, '_' and '-' kept), spaces to '-', repeats numbered -1, -2, ..."""
    seen, ids = {}, set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def broken_links(path):
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            shown = dest.relative_to(REPO) if REPO in dest.parents else dest.name
            broken.append(f"{target}: no heading #{anchor} in {shown}")
    return broken


def test_the_pages_are_found():
    names = {p.relative_to(REPO).as_posix() for p in pages()}
    assert {"README.md", "docs/results.md", "recipes/translation/multi30k/README.md"} <= names


@pytest.mark.parametrize("path", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_link_check_sees_a_broken_file_and_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A heading, with `code` & α 3\n\n[ok](#a-heading-with-code--α-3) [self](page.md)\n"
                    "[gone](missing.md) [bad](#no-such) ![img](img/x.png) [web](https://example.org)\n"
                    "```\n[in code](not-a-link.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md: no such file", "#no-such: no heading #no-such in page.md",
                                  "img/x.png: no such file"]


def test_anchor_ids_follow_github():
    page_ids = anchors(REPO / "docs" / "results.md")
    assert "translation-multi30k" in page_ids


def recipe_settings():
    from recipes.childtuning import multi30k_transfer
    from recipes.classification import pretrain, run as classification
    from recipes.translation.multi30k import run as multi30k

    return {*multi30k.SETTINGS, *classification.SETTINGS, *pretrain.SETTINGS, *multi30k_transfer.SETTINGS}


def test_every_setting_named_in_the_pages_exists():
    known = recipe_settings()
    named = {(path.relative_to(REPO).as_posix(), name) for path in pages()
             for name in re.findall(r"--setting[ =]([A-Za-z0-9_-]+)", path.read_text(encoding="utf-8"))}
    assert named, "no --setting found in the pages"
    assert sorted((page, name) for page, name in named if name not in known) == []
