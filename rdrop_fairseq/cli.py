"""Console command ``rdrop-fairseq-user-dir``: the path to pass to ``--user-dir``.

    fairseq-train ... --user-dir "$(rdrop-fairseq-user-dir)"

It locates the installed package without importing it (and so without importing
fairseq), so it is instant.
"""
import importlib.util
import os


def user_dir():
    spec = importlib.util.find_spec("rdrop_fairseq")
    return os.path.dirname(os.path.abspath(spec.origin))


def print_user_dir():
    print(user_dir())
