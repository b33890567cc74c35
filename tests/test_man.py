#!/usr/bin/python3
"""Every man page lints clean (mandoc -T lint -W warning prints nothing)
and renders with man -l; every program has its page.

    /usr/bin/python3 tests/test_man.py [REPO [BINDIR]]
"""

import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

MAN = os.path.join(T.TOP, "man")
PAGES = ["dopis-smtpd.8", "dopis-deliver.8", "dopis-relay.8", "dopis-queue.8",
         "dopis-check.8", "dopis-sendmail.8", "dopis.conf.5"]


def lint(page):
    p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page], capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    return ["mandoc -T lint: exit %d\n%s" % (p.returncode, out)] if p.returncode or out.strip() else []


def render(page):
    p = subprocess.run(["man", "-l", page], capture_output=True, timeout=30,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
    text = p.stdout.decode("utf-8", "replace")
    name = os.path.basename(page).rsplit(".", 1)[0]
    probs = []
    if p.returncode:
        probs.append("man -l: exit %d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace")))
    if "NAME" not in text or name.split(".")[0] not in text:
        probs.append("man -l rendered no NAME section naming %s" % name)
    return probs


def main():
    res = T.Results()
    res.run("man-every-program", lambda: ["missing man/%s" % p for p in PAGES
                                         if not os.path.exists(os.path.join(MAN, p))])
    for page in sorted(glob.glob(os.path.join(MAN, "*.[1-8]"))):
        base = os.path.basename(page)
        res.run("man-lint-" + base, lint, page)
        res.run("man-render-" + base, render, page)
    res.exit()


if __name__ == "__main__":
    main()
