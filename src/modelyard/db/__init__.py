"""Metadata storage: SQLAlchemy Core tables, the engine with its write discipline, migrations."""
