#!/usr/bin/env python3
"""Gives a checkout's files the modification times the shared build cache knows them by.

Cargo judges the workspace's own crates fresh or stale by file times: a source file newer
than the build that read it makes that crate compile again. A fresh clone's files are all
new, so without this every clone compiled the core library and the 31 functions again in
each profile (check, debug, arm64 release: about 8 minutes of a warm CI run), although the
cache had built exactly this content before.

The manifest (in the cache directory, beside the caches it speaks for) holds, per file of
the checkout, the SHA-256 of its content and a time T, with this meaning: every build into
the caches since T read this content. For each file git tracks (or would track: untracked
files that are not ignored), and each folder that holds one (its content: its entries):
- content the manifest knows: the file gets the time T, so that the builds since T count
  as fresh for it. With --restore (a fresh clone: .ci/run) that can make the file older than
  it is; without it (a working tree, which may have a target/ of its own that the manifest
  knows nothing of) a file is only ever made newer: it gets the later of T and its own time;
- content it does not know (a changed or new file): the file gets the time now, newer than
  every build in the caches, and the manifest takes the content with that time.

So a build after this compiles what changed since the caches last saw it, and nothing else.
The rule holds as long as every build into the caches runs after this script (scripts/lib.sh
runs it whenever a script sources it, and only scripts point cargo at the shared caches),
and no two checkouts build into the same caches at the same time.

Usage: source_times.py MANIFEST CHECKOUT [--restore]
"""

import hashlib
import json
import os
import subprocess
import sys
import time


def checkout_files(root):
    """Paths (relative to root) of the tracked and the untracked-but-not-ignored files."""
    listing = subprocess.run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    return sorted({path for path in listing.decode().split("\0") if path})


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def contents(root):
    """(path, SHA-256) of every file, then of every folder holding one: a folder's content is
    the list of its entries (`rerun-if-changed` on a folder compares the folder's own time),
    and its path ends in a slash."""
    files, folders = [], {}
    for rel in checkout_files(root):
        path = os.path.join(root, rel)
        # Deleted but still in the index, a symlink, a submodule: nothing cargo reads by time.
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        files.append((rel, digest(path)))
        child = rel
        while "/" in child:
            parent, name = child.rsplit("/", 1)
            folders.setdefault(parent, set()).add(name)
            child = parent
    listing = [
        (f"{folder}/", hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest())
        for folder, names in sorted(folders.items())
    ]
    return files + listing


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--restore"]):
        sys.exit("usage: source_times.py MANIFEST CHECKOUT [--restore]")
    manifest_path, root = sys.argv[1], sys.argv[2]
    restore = sys.argv[3:] == ["--restore"]
    try:
        with open(manifest_path) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}

    now = time.time_ns()
    manifest, kept, changed = {}, 0, []
    for rel, sha in contents(root):
        path = os.path.join(root, rel)
        mtime = os.stat(path).st_mtime_ns
        entry = known.get(rel)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == sha:
            known_since = int(entry[1])
            stamp = known_since if restore else max(known_since, mtime)
            kept += 1
        else:
            known_since = stamp = now
            changed.append(rel)
        if mtime != stamp:
            os.utime(path, ns=(stamp, stamp))
        manifest[rel] = [sha, known_since]

    os.makedirs(os.path.dirname(manifest_path) or ".", exist_ok=True)
    partial = f"{manifest_path}.{os.getpid()}"
    with open(partial, "w") as f:
        json.dump(manifest, f, separators=(",", ":"), sort_keys=True)
    os.replace(partial, manifest_path)

    shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
    print(
        f"source times: {kept} files and folders as the build caches saw them, "
        f"{len(changed)} new or changed"
        + (f" ({shown})" if changed and kept else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
