"""Pieces every part of the API shares: settings, database, errors, logging."""
