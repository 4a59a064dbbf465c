"""Semantic versions (https://semver.org): parsing, ordering, bumps and ranges.

A model version carries both MLflow's integer number and a semver. Through MLflow, whose
aliases must match ``^[\\w\\-]*$``, a semver is reachable as the alias ``v`` + the version with
dots written as underscores: ``models:/name@v1_4_0``; ``@v1_4`` and ``@v1`` name the highest
release of 1.4.x and 1.x.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidParameter

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_ALIAS = re.compile(r"^v(\d+)(?:_(\d+))?(?:_(\d+))?(?:-([0-9A-Za-z-]+(?:_[0-9A-Za-z-]+)*))?$")
_RANGE = re.compile(r"^([\^~]?)(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
BUMPS = ("major", "minor", "patch")
FIRST = "1.0.0"


@dataclass(frozen=True, order=False)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """Precedence: a release sorts after its pre-releases; build metadata is ignored."""
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    @property
    def alias(self) -> str:
        """The MLflow alias form: ``v1_4_0``, ``v2_0_0-rc1``."""
        text = f"v{self.major}_{self.minor}_{self.patch}"
        return text + ("-" + "_".join(self.prerelease) if self.prerelease else "")


def parse(text: str) -> SemVer:
    match = _SEMVER.match(text.strip())
    if match is None:
        raise InvalidParameter(
            f"Invalid semantic version {text[:100]!r}: expected MAJOR.MINOR.PATCH with an optional "
            "-prerelease and +build, e.g. 1.4.0 or 2.0.0-rc1."
        )
    major, minor, patch, pre, build = match.groups()
    return SemVer(
        int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or ""
    )


def bump(latest: SemVer | None, part: str = "patch") -> SemVer:
    """The next version after ``latest`` (1.0.0 when there is none)."""
    if part not in BUMPS:
        raise InvalidParameter(f"Invalid bump {part!r}: use one of {', '.join(BUMPS)}.")
    if latest is None:
        return parse(FIRST)
    if part == "major":
        return SemVer(latest.major + 1, 0, 0)
    if part == "minor":
        return SemVer(latest.major, latest.minor + 1, 0)
    if latest.prerelease:  # 2.0.0-rc1 -> 2.0.0
        return SemVer(latest.major, latest.minor, latest.patch)
    return SemVer(latest.major, latest.minor, latest.patch + 1)


def highest(versions: list[SemVer]) -> SemVer | None:
    return max(versions, key=SemVer.key, default=None)


def from_alias(alias: str) -> tuple[str, SemVer | None, str | None]:
    """Read an alias as a semver reference: ("exact", version, None) for ``v1_4_0``,
    ("range", None, "~1.4") for ``v1_4``, ("range", None, "^1") for ``v1``, or
    ("none", None, None) when it is not one."""
    match = _ALIAS.match(alias)
    if match is None:
        return "none", None, None
    major, minor, patch, pre = match.groups()
    if patch is not None:
        text = f"{major}.{minor}.{patch}" + (f"-{pre.replace('_', '.')}" if pre else "")
        if not _SEMVER.match(text):  # v01_0_0 is a name, not a version
            return "none", None, None
        return "exact", parse(text), None
    if pre:
        return "none", None, None
    return "range", None, (f"~{major}.{minor}" if minor is not None else f"^{major}")


def matches(version: SemVer, spec: str) -> bool:
    """Whether ``version`` satisfies ``spec``: ``1.4.0`` (exact), ``^1.4`` (same major, at least
    1.4), ``~2.0`` (same major and minor, at least 2.0). Pre-releases match only exactly."""
    spec = spec.strip()
    if _SEMVER.match(spec):
        return version.key() == parse(spec).key()
    match = _RANGE.match(spec)
    if match is None:
        raise InvalidParameter(f"Invalid version range {spec[:100]!r}: use 1.4.0, ^1.4 or ~2.0.")
    if version.prerelease:
        return False
    kind, major, minor, patch = match.groups()
    floor = (int(major), int(minor or 0), int(patch or 0))
    current = (version.major, version.minor, version.patch)
    if current < floor or version.major != floor[0]:
        return False
    if kind == "~" or (kind == "" and minor is not None):
        return version.minor == floor[1] if minor is not None else True
    return True
