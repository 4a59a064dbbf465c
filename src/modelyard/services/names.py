"""Friendly generated names for candidates that were started without one."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "daring",
    "eager",
    "fair",
    "gentle",
    "glad",
    "grand",
    "honest",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "nimble",
    "polite",
    "quick",
    "quiet",
    "rapid",
    "sharp",
    "shy",
    "smooth",
    "steady",
    "swift",
    "vivid",
)
_NOUNS = (
    "otter",
    "heron",
    "lynx",
    "falcon",
    "badger",
    "sparrow",
    "bison",
    "koala",
    "marten",
    "owl",
    "panda",
    "quail",
    "raven",
    "salmon",
    "tiger",
    "walrus",
    "yak",
    "zebra",
    "crane",
    "dolphin",
    "gecko",
    "ibis",
    "jaguar",
    "lemur",
    "moose",
    "newt",
    "orca",
    "puffin",
    "robin",
    "seal",
)


def candidate_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000)}"
