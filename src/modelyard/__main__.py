"""``python -m modelyard``."""

from modelyard.cli import main

main()
