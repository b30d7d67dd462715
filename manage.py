#!/usr/bin/env python3
"""Manage HIE productions: ``python manage.py --help`` (the same as the ``hie`` command)."""

import sys

from hie.cli import main

if __name__ == "__main__":
    sys.exit(main())
