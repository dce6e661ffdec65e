"""``python -m collapsecheck``: the same command line as the ``collapsecheck`` script."""
from .cli import main

if __name__ == "__main__":
    main()
