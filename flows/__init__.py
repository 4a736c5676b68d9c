"""Prefect flows: composition of the stages in tasks/ (no model logic here)."""
