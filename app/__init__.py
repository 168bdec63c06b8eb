"""Tandem's CPU API: FastAPI over Postgres + pgvector, inference through RunPod or in-process."""
