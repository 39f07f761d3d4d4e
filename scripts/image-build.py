#!/usr/bin/env python3
"""Reproduces the Dockerfile's build stage without a container runtime, and checks that the
binary it produces can run in the runtime image.

No image can be pulled on the machines that run `make test`, so the build stage is
interpreted here instead: the build context is computed from .dockerignore as Docker does,
every COPY of the build stage copies from that context (a source the context lacks is an
error, as it is for `docker build`), and every RUN runs in the copied tree. Any instruction
this script does not understand fails it: a Dockerfile change must come with a change here.

The runtime stage is then checked against what it provides: the binary copied into it must
be an x86_64 ELF that needs only the shared libraries of distroless/cc-debian12 and no glibc
newer than Debian 12's, the USER must not be root, and the ENTRYPOINT must be the binary.
Finally the binary runs with an empty environment from an empty directory, as it would in a
container with a read-only root filesystem.

The cargo target directory is kept in the cache (CTWA_CACHE_DIR, default
~/.cache/ctwa-operator/image-build-target), so only the first run builds from scratch.
"""

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CTWA_CACHE_DIR", Path.home() / ".cache" / "ctwa-operator"))

# What gcr.io/distroless/cc-debian12 ships: glibc's libraries and libgcc_s.
RUNTIME_LIBRARIES = {
    "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "ld-linux-x86-64.so.2",
}
RUNTIME_GLIBC = (2, 36)
INTERPRETER = "/lib64/ld-linux-x86-64.so.2"


def fail(message):
    print(f"image-build: error: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"image-build: {message}", file=sys.stderr)


# --- the Dockerfile -------------------------------------------------------------------------

def instructions(text):
    """(instruction, arguments) pairs, with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(parsed):
    """The stages in order, each a dict with its FROM line and its instructions."""
    result = []
    for word, rest in parsed:
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"from": parts[0], "name": name, "steps": []})
        elif not result:
            fail(f"{word} before the first FROM")
        else:
            result[-1]["steps"].append((word, rest))
    return result


def arguments(rest):
    """Words of a COPY, ENTRYPOINT or CMD: JSON form or shell words."""
    if rest.startswith("["):
        import json
        return json.loads(rest)
    return shlex.split(rest)


# --- the build context ----------------------------------------------------------------------

def ignore_patterns():
    path = ROOT / ".dockerignore"
    if not path.exists():
        fail(".dockerignore is missing: the whole work tree (target/, .git) would be sent")
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().strip("/"))
        patterns.append((negate, pattern))
    return patterns


def glob(pattern):
    """A .dockerignore pattern as a regular expression: `*` and `?` stay within one path
    segment, `**` spans any number of them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def matches(pattern, path):
    """Docker's rule: a pattern excludes (or re-includes) a path when it matches the path or
    one of its parent directories."""
    parts = path.split("/")
    regex = glob(pattern)
    return any(regex.match("/".join(parts[:end])) for end in range(1, len(parts) + 1))


def in_context(path, patterns):
    included = True
    for negate, pattern in patterns:
        if matches(pattern, path):
            included = negate
    return included


def context_files():
    """Every file `docker build .` would send: the tracked and untracked-but-not-ignored
    files of the work tree that .dockerignore lets through."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    patterns = ignore_patterns()
    return sorted(p for p in listed if p and (ROOT / p).is_file() and in_context(p, patterns))


# --- the build stage ------------------------------------------------------------------------

def check_toolchain(image):
    match = re.match(r"rust:(\d+\.\d+)", image)
    if not match:
        fail(f"the build stage starts FROM {image}; this script reproduces rust:<version> stages only")
    rustc = subprocess.run(["rustc", "--version"], check=True, capture_output=True, text=True).stdout
    local = re.search(r"rustc (\d+\.\d+)", rustc).group(1)
    if local != match.group(1):
        fail(f"the Dockerfile builds with Rust {match.group(1)} but this machine has {local}")


def build(stage, files, root):
    workdir = Path("/")
    env = dict(os.environ)
    for word, rest in stage["steps"]:
        if word == "WORKDIR":
            workdir = workdir / rest
            (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif word == "ENV":
            key, _, value = rest.partition("=")
            env[key.strip()] = value.strip().strip('"')
        elif word == "COPY":
            words = arguments(rest)
            if any(w.startswith("--") for w in words):
                fail(f"COPY {rest}: flags in the build stage are not reproduced")
            *sources, dest = words
            target = (workdir / dest) if not dest.startswith("/") else Path(dest)
            into_directory = len(sources) > 1 or dest.endswith("/") or dest in (".", "./")
            for source in sources:
                source = os.path.normpath(source)
                if source in files:
                    # A file: into the directory under its own name, or as the named file.
                    pairs = [(source, target / Path(source).name if into_directory else target)]
                else:
                    # A directory: its contents, not the directory itself.
                    pairs = [(f, target / Path(f).relative_to(source))
                             for f in files if f.startswith(source + "/")]
                if not pairs:
                    fail(f"COPY {source}: not in the build context (check .dockerignore)")
                for f, out in pairs:
                    out = root / out.relative_to("/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / f, out)
        elif word == "RUN":
            cwd = root / workdir.relative_to("/")
            say(f"RUN {rest} (in {workdir})")
            subprocess.run(["sh", "-c", rest], cwd=cwd, env=env, check=True)
        else:
            fail(f"{word} in the build stage is not reproduced by this script")
    return workdir


# --- the runtime stage ----------------------------------------------------------------------

def elf_checks(binary):
    header = subprocess.run(["readelf", "-h", "-l", "-d", str(binary)], check=True,
                            capture_output=True, text=True).stdout
    if "Advanced Micro Devices X86-64" not in header:
        fail(f"{binary} is not an x86_64 ELF binary")
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", header))
    extra = needed - RUNTIME_LIBRARIES
    if extra:
        fail(f"the binary needs {sorted(extra)}, which distroless/cc-debian12 does not have")
    interpreter = re.search(r"Requesting program interpreter: ([^\]]+)\]", header)
    if interpreter and interpreter.group(1) != INTERPRETER:
        fail(f"the binary asks for the loader {interpreter.group(1)}, the runtime has {INTERPRETER}")
    symbols = subprocess.run(["readelf", "--dyn-syms", "-W", str(binary)], check=True,
                             capture_output=True, text=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"@GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
    newest = max(versions, default=(0,))
    if newest[:2] > RUNTIME_GLIBC:
        fail(f"the binary needs glibc {'.'.join(map(str, newest))}; Debian 12 has {'.'.join(map(str, RUNTIME_GLIBC))}")
    say(f"the binary needs {sorted(needed)} and glibc >= {'.'.join(map(str, newest))}: the runtime image has both")


def runtime_checks(stage, built_root, build_name):
    copied, user, entrypoint = None, None, None
    for word, rest in stage["steps"]:
        if word == "COPY":
            words = arguments(rest)
            flags = [w for w in words if w.startswith("--")]
            rest_words = [w for w in words if not w.startswith("--")]
            if f"--from={build_name}" not in flags:
                fail(f"COPY {rest}: the runtime stage copies only from the build stage")
            source, dest = rest_words
            copied = (built_root / source.lstrip("/"), dest)
        elif word == "USER":
            user = rest
        elif word == "ENTRYPOINT":
            entrypoint = arguments(rest)
        elif word not in ("EXPOSE", "CMD", "LABEL", "ENV"):
            fail(f"{word} in the runtime stage is not checked by this script")
    if copied is None:
        fail("the runtime stage copies no binary from the build stage")
    binary, dest = copied
    if not binary.is_file():
        fail(f"the build stage produced no {binary}")
    if not user or user.split(":")[0] in ("0", "root"):
        fail(f"the runtime stage runs as {user or 'root'}; it must name a non-root UID")
    if not entrypoint or entrypoint[0] != dest:
        fail(f"ENTRYPOINT {entrypoint} does not run the copied binary {dest}")
    elf_checks(binary)
    # As in the container: no environment, no writable or meaningful working directory.
    with tempfile.TemporaryDirectory() as empty:
        for args in (["version"], ["crds"], ["run", "--help"], ["check", "--help"]):
            done = subprocess.run([str(binary), *args], cwd=empty, env={}, capture_output=True, text=True)
            if done.returncode != 0:
                fail(f"`{dest} {' '.join(args)}` failed with an empty environment:\n{done.stderr}")
    say(f"{dest} runs with an empty environment: version, crds, run --help, check --help")
    return binary


def main():
    parsed = stages(instructions((ROOT / "Dockerfile").read_text()))
    if len(parsed) != 2:
        fail(f"expected a build stage and a runtime stage, found {len(parsed)} stages")
    build_stage, runtime_stage = parsed
    if not runtime_stage["from"].startswith("gcr.io/distroless/cc-debian12"):
        fail(f"the runtime stage is {runtime_stage['from']}; the library checks here are for distroless/cc-debian12")
    check_toolchain(build_stage["from"])
    files = context_files()
    leaked = [f for f in files if f.startswith(("target/", ".git/")) or "/target/" in f]
    if leaked:
        fail(f".dockerignore lets build output into the context: {leaked[:5]}")
    say(f"build context: {len(files)} files")
    target = CACHE / "image-build-target"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctwa-image-") as tmp:
        root = Path(tmp)
        # The stage's working directory gets the cached target directory, so a second run
        # only rebuilds what changed.
        workdir = next((Path(r) for w, r in build_stage["steps"] if w == "WORKDIR"), Path("/"))
        (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        (root / workdir.relative_to("/") / "target").symlink_to(target)
        os.environ.pop("CARGO_TARGET_DIR", None)
        build(build_stage, files, root)
        binary = runtime_checks(runtime_stage, root, build_stage["name"])
        size = binary.stat().st_size / 1e6
        say(f"ok: the image's binary builds from the Dockerfile's context ({size:.1f} MB)")


if __name__ == "__main__":
    main()
