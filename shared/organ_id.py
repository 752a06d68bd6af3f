"""Agency identifiers (mã định danh, Decision 20/2020/QĐ-TTg): validation and the subtree relation.

A code ``NNN.NN.NN.XNN`` reads right to left: ``XNN`` is level 1 (``H`` province, ``G`` central
body), then level 2, 3 and 4; a group of zeros means "no unit at this level". So whether one
agency lies inside another's subtree follows from the codes alone, with no tree lookup.
"""

from __future__ import annotations

import re

ORGAN_ID = re.compile(r"^(\d{3})\.(\d{2})\.(\d{2})\.([A-Z]\d{2})$")


def is_valid(code: str) -> bool:
    m = ORGAN_ID.match(code)
    if not m:
        return False
    level4, level3, level2, _ = m.groups()
    # A lower level cannot exist without the level above it: 000.17.00.H56 has no parent unit.
    if level3 != "00" and level2 == "00":
        return False
    if level4 != "000" and level3 == "00":
        return False
    return True


def path(code: str) -> tuple[str, ...]:
    """Levels from the top: ``000.17.22.H56`` → ``("H56", "22", "17")``."""
    m = ORGAN_ID.match(code)
    if not m:
        raise ValueError(f"not an agency identifier: {code!r}")
    level4, level3, level2, level1 = m.groups()
    levels = [level1]
    for group in (level2, level3, level4):
        if int(group) == 0:
            break
        levels.append(group)
    return tuple(levels)


def level(code: str) -> int:
    return len(path(code))


def parent(code: str) -> str | None:
    levels = path(code)
    if len(levels) == 1:
        return None
    return compose(levels[:-1])


def compose(levels: tuple[str, ...] | list[str]) -> str:
    groups = list(levels[1:]) + ["00"] * (3 - (len(levels) - 1))
    level2, level3, level4 = groups[0], groups[1], groups[2]
    return f"{int(level4):03d}.{level3}.{level2}.{levels[0]}"


def within(code: str, ancestor: str) -> bool:
    """True when ``code`` is ``ancestor`` or one of its descendants."""
    try:
        mine, theirs = path(code), path(ancestor)
    except ValueError:
        return False
    return mine[: len(theirs)] == theirs
