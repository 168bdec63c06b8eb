"""Turning uploads into searchable text: parse a file into sections, split them into chunks."""
