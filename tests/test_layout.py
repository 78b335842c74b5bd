"""The tree shows the architecture (issue #14): README's Layout names every source file of
the four parts in its folder's bullet, the engine stays free of FUSE headers, and no source
file grows past 800 lines. These read the repository only; nothing is mounted."""
import re

from helpers import REPO

PARTS = ("engine", "fuse", "cli", "tools")
MAX_LINES = 800


def _layout_bullets():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("\n## Layout\n"):]
    bullets = {}
    for part in PARTS:
        m = re.search(rf"^- `src/{part}/`(.*?)(?=^- |\Z)", layout, re.S | re.M)
        assert m, f"README Layout has no bullet for src/{part}/"
        bullets[part] = m.group(1)
    return bullets


def test_src_holds_the_four_parts():
    assert sorted(p.name for p in (REPO / "src").iterdir() if p.is_dir()) == sorted(PARTS)
    assert not [p.name for p in (REPO / "src").iterdir() if p.is_file()]


def test_readme_layout_names_every_file():
    bullets = _layout_bullets()
    missing = [f"src/{part}/{f.name}" for part in PARTS
               for f in sorted((REPO / "src" / part).glob("*.[ch]"))
               if f"`{f.name}`" not in bullets[part]]
    assert not missing, f"README Layout does not name: {missing}"


def test_engine_has_no_fuse_header():
    for f in sorted((REPO / "src" / "engine").glob("*.[ch]")):
        includes = re.findall(r'^#include [<"]([^>"]+)[>"]', f.read_text(), re.M)
        assert not [i for i in includes if "fuse" in i], f"{f.name} includes {includes}"


def test_no_source_file_over_800_lines():
    files = [*REPO.glob("src/*/*.[ch]"), *REPO.glob("tests/unit/*.[ch]"),
             *REPO.glob("tests/libfuzzer/*.[ch]")]
    long = {str(f.relative_to(REPO)): n for f in files
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, long
