"""`python -m ssl_min.embed --checkpoint C --data FOLDER --out DIR`: one .npy per audio file
(the exporter: ssl_min/evaluate/export.py, where the options are documented)."""
from ssl_min.evaluate.export import export, main

__all__ = ["export", "main"]

if __name__ == "__main__":
    main()
