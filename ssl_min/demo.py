"""`python -m ssl_min.demo [ROOT]`: write the built-in demo dataset (ssl_min/data/demo.py)."""
from ssl_min.data.demo import build, main

__all__ = ["build", "main"]

if __name__ == "__main__":
    main()
