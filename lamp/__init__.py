"""The `lamp` command line: train, generate, animate, edit, score, compare, pipeline (see `lamp --help`)."""
