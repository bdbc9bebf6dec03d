"""CLI tests (a package: tests/eval/test_cli.py has the same file name)."""
