"""Images logged with a key and a step (``mlflow.log_image(image, key=, step=)``): the
client stores each as ``images/<key>+step+<n>+timestamp+<ms>+<uuid>.png`` with a smaller
``…+compressed.webp`` beside it (clients before 3.x wrote ``%`` instead of ``+``, and ``#``
instead of ``~`` for a ``/`` in the key). The candidate page shows them per key, one step at
a time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NAME = re.compile(
    r"images/(?P<key>[^/]+?)(?P<sep>[+%])step(?P=sep)(?P<step>-?\d+)(?P=sep)timestamp(?P=sep)"
    r"(?P<ts>\d+)(?P=sep)(?P<id>[^/+%.]+)(?P<compressed>(?P=sep)compressed)?\.(?P<ext>png|webp)"
)
MAX_KEYS = 20


@dataclass(slots=True)
class StepImage:
    step: int
    timestamp: int
    path: str  # the full-size image
    preview: str  # the compressed copy when there is one, else the full-size image


@dataclass(slots=True)
class ImageKey:
    key: str
    steps: list[StepImage] = field(default_factory=list)


def stepped_images(paths: Iterable[str]) -> list[ImageKey]:
    """The stepped images among a candidate's file paths, by key, each key's in step order."""
    full: dict[tuple[str, str], tuple[str, int, int, str]] = {}
    previews: dict[tuple[str, str], str] = {}
    for path in paths:
        found = _NAME.fullmatch(path)
        if found is None:
            continue
        key = found["key"].replace("~", "/").replace("#", "/")
        ident = (key, found["id"])
        if found["compressed"]:
            previews[ident] = path
        elif found["ext"] == "png":
            full[ident] = (key, int(found["step"]), int(found["ts"]), path)
    by_key: dict[str, ImageKey] = {}
    for ident, (key, step, timestamp, path) in full.items():
        entry = by_key.setdefault(key, ImageKey(key))
        entry.steps.append(StepImage(step, timestamp, path, previews.get(ident, path)))
    for entry in by_key.values():
        entry.steps.sort(key=lambda s: (s.step, s.timestamp))
    return [by_key[key] for key in sorted(by_key)][:MAX_KEYS]
