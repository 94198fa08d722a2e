"""Staff accounts of the console.

    python -m console.users create EMAIL [--password-stdin]   # asks for the password twice, or reads one line
    python -m console.users passwd EMAIL [--password-stdin]   # new password; signs the account out everywhere
    python -m console.users disable EMAIL | enable EMAIL      # enable also unlocks a locked account
    python -m console.users list

There is no default account and no default password. Passwords have at least 12 characters.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from console import auth, db
from core.settings import ConfigError, database_url
from core.store import make_engine


def read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("Same password again: ") != first:
        raise auth.AccountError("the passwords differ")
    return first


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console.users", description="Manage staff accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "passwd"):
        command = commands.add_parser(name)
        command.add_argument("email")
        command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    for name in ("disable", "enable"):
        commands.add_parser(name).add_argument("email")
    commands.add_parser("list")
    args = parser.parse_args(argv)
    try:
        engine = make_engine(database_url())
        db.create_schema(engine)
        if args.command == "create":
            auth.normalise_email(args.email)
            auth.create_user(engine, args.email, read_password(args.password_stdin))
            print(f"Created the account {args.email.strip().lower()}.")
        elif args.command == "passwd":
            auth.set_password(engine, args.email, read_password(args.password_stdin))
            print(f"Changed the password of {args.email.strip().lower()}.")
        elif args.command in ("disable", "enable"):
            auth.set_active(engine, args.email, args.command == "enable")
            print(f"{args.command.capitalize()}d {args.email.strip().lower()}.")
        else:
            for user in auth.list_users(engine):
                state = "active" if user["active"] else "disabled"
                print(f"{user['email']}  {state}  created {user['created_at']:%Y-%m-%d}  "
                      f"last sign-in {user['last_login_at'] or 'never'}")
    except auth.AccountError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, SQLAlchemyError) as error:
        print(f"Cannot use the database: {db.describe_error(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
