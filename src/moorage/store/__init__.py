"""Persistence: SQLAlchemy tables, the engine, and one repository per aggregate."""
