"""Helpers the workers and the API share."""
