"""Training programs built on solo-learn (importing this package requires solo-learn)."""
