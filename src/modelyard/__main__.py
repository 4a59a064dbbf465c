"""``python -m modelyard``: the ``modelyard`` command (the client's, which finds the server's
commands through their entry points)."""

from modelyard_client.cli import main

main()
