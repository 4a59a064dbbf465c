"""The modelyard client: the ``modelyard`` command over HTTP. It never imports the server."""

__version__ = "0.1.0"
