"""`checkpoint ui hash-password`: an officer's password as the argon2 hash [ui] officers takes.

The password comes from a prompt (asked twice) when stdin is a terminal, else from stdin's first line, so a
script can pipe it in; it is never an argument (arguments show in `ps` and the shell's history).
"""
from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TextIO

from argon2 import PasswordHasher

from edge.ui.errors import PasswordError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # what the login form takes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-length", type=int, default=MIN_LENGTH,
                        help=f"refuse shorter passwords (default {MIN_LENGTH})")


def read_password(stdin: TextIO | None = None, prompt: Callable[[str], str] = getpass.getpass) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = prompt("Officer's password: ")
        if prompt("Again: ") != first:
            raise PasswordError("the two passwords differ")
        return first
    line = stdin.readline()
    return line.rstrip("\r\n")


def hash_password(password: str, min_length: int = MIN_LENGTH) -> str:
    if len(password) < min_length:
        raise PasswordError(f"password shorter than {min_length} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"password longer than {MAX_LENGTH} characters (the login form takes no more)")
    hashed: str = PasswordHasher().hash(password)
    return hashed


def run(args: argparse.Namespace) -> int:
    try:
        hashed = hash_password(read_password(), args.min_length)
    except PasswordError as exc:
        print(f"checkpoint ui hash-password: {exc}", file=sys.stderr)
        return exc.exit_status
    except (EOFError, KeyboardInterrupt):
        print("checkpoint ui hash-password: no password given", file=sys.stderr)
        return 2
    print(hashed)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="checkpoint ui hash-password", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
