"""LAMP: few-shot motion-pattern video generation (model package)."""
