"""Command modules that plug into ``hie`` (each has ``add_commands(subparsers)``)."""
