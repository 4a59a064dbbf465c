"""Route pieces shared by the MLflow API and the native API."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class AnyPathConvertor(Convertor[str]):
    """Like Starlette's ``path``, but also matching control characters (a decoded ``%0a``),
    so that such a file path reaches ``safe_path`` and is refused with a 400, not a 404.
    Routes use it as ``{path:anypath}``."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPathConvertor())
