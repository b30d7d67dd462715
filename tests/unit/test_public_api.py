"""The public surface: ``hie.__all__``, what ``hie`` really binds, and the README's API section."""

from __future__ import annotations

import __future__
import re
import types
from pathlib import Path

import hie

README = Path(__file__).resolve().parents[2] / "README.md"


def _bound_public_names() -> set[str]:
    """Public names ``hie/__init__.py`` binds, without the submodules importing it loads.

    ``from __future__ import annotations`` binds ``annotations`` too; it is a compiler flag.
    """
    return {
        name
        for name, value in vars(hie).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | type(__future__.annotations))
    }


def _readme_api_names() -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## API\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no '## API' section"
    # Only bare names count: `hie.__all__` and `import hie` in the prose are not API names.
    return re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(1))


def test_all_lists_each_public_name_once() -> None:
    assert len(hie.__all__) == len(set(hie.__all__))


def test_all_matches_the_names_the_package_binds() -> None:
    bound = _bound_public_names()
    assert sorted(set(hie.__all__) - bound) == [], "in __all__ but not bound by hie/__init__.py"
    assert sorted(bound - set(hie.__all__)) == [], "bound by hie/__init__.py but not in __all__"


def test_readme_api_section_lists_exactly_hie_all() -> None:
    listed = _readme_api_names()
    assert len(listed) == len(set(listed)), "a name is listed twice in the README's API section"
    assert sorted(set(hie.__all__) - set(listed)) == [], "in __all__ but not in the README"
    assert sorted(set(listed) - set(hie.__all__)) == [], "in the README but not in __all__"
