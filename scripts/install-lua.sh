#!/usr/bin/env bash
# Provides a Lua interpreter (5.1 or newer) for the Argo CD health-check tests, without root
# and without installing anything system-wide.
#
#   1. `lua5.4` on PATH, or `lua` reporting version 5.1 or newer: used as it is.
#   2. Otherwise Debian's `lua5.4` and `liblua5.4-0` packages are fetched with
#      `apt-get download` (works as an ordinary user) and unpacked with `dpkg-deb -x` into
#      $CTWA_CACHE_DIR/lua (default ~/.cache/ctwa-operator/lua), next to a wrapper script
#      `bin/lua` that sets LD_LIBRARY_PATH to the unpacked library directory.
#
# Prints the path of the interpreter (or of the wrapper) on stdout, nothing else; progress
# goes to stderr. Idempotent: a second run prints the cached wrapper at once. Any failure
# exits non-zero with a message saying what went wrong.
#
# CTWA_LUA_IGNORE_PATH=1 skips step 1 (to test step 2 on a machine that has Lua).
set -euo pipefail

CACHE_ROOT="${CTWA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ctwa-operator}"
OUT="$CACHE_ROOT/lua"
WRAPPER="$OUT/bin/lua"
PACKAGES=(lua5.4 liblua5.4-0)

say() { echo "install-lua: $*" >&2; }
die() { echo "install-lua: error: $*" >&2; exit 1; }

# Runs `$1 -v` and succeeds when it is Lua 5.1 or newer (PUC Lua prints "Lua 5.4.4  Copyright ...").
is_lua_5_1_or_newer() {
  local version
  version=$("$1" -v 2>&1 | head -n1) || return 1
  [[ "$version" =~ ^Lua\ ([0-9]+)\.([0-9]+) ]] || return 1
  local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  (( major > 5 || (major == 5 && minor >= 1) ))
}

# A usable interpreter evaluates a chunk and prints its result.
works() {
  [ -x "$1" ] && [ "$("$1" -e 'io.write(1 + 1)' 2>/dev/null)" = "2" ]
}

# 1. An interpreter on PATH.
if [ "${CTWA_LUA_IGNORE_PATH:-}" != 1 ]; then
  for candidate in lua5.4 lua; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if is_lua_5_1_or_newer "$path" && works "$path"; then
      echo "$path"
      exit 0
    fi
  done
fi

# 2. The cached copy, unpacked earlier.
if works "$WRAPPER"; then
  echo "$WRAPPER"
  exit 0
fi

command -v apt-get >/dev/null || die "no Lua >= 5.1 on PATH and no apt-get to fetch Debian's lua5.4 (install lua5.4 or put a Lua >= 5.1 on PATH)"
command -v dpkg-deb >/dev/null || die "no Lua >= 5.1 on PATH and no dpkg-deb to unpack Debian's lua5.4 (install lua5.4 or put a Lua >= 5.1 on PATH)"
command -v flock >/dev/null || die "flock (util-linux) is required"

mkdir -p "$CACHE_ROOT" || die "cannot create the cache directory $CACHE_ROOT"
exec 9>"$CACHE_ROOT/.install-lua.lock"
flock 9
# Another process may have finished while we waited for the lock.
if works "$WRAPPER"; then
  echo "$WRAPPER"
  exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ctwa-install-lua.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# As root, apt drops to the `_apt` user for downloads, which cannot write into a private
# temporary directory; downloading as root into it is what we want here.
apt_opts=()
if [ "$(id -u)" = 0 ]; then apt_opts+=(-o APT::Sandbox::User=root); fi

# `apt-get download` needs package lists. When the system has none (a slim image where
# `apt-get update` never ran) they are fetched into a private directory: that needs no root.
download() {
  (cd "$TMP/debs" && apt-get "${apt_opts[@]}" "$@" download "${PACKAGES[@]}") >"$TMP/apt.log" 2>&1
}
mkdir -p "$TMP/debs"
say "fetching ${PACKAGES[*]} with apt-get download"
if ! download; then
  say "apt-get download failed with the system package lists; trying private ones"
  sed 's/^/  /' "$TMP/apt.log" >&2
  lists=(
    -o "Dir::State::Lists=$TMP/lists"
    -o "Dir::Cache=$TMP/cache"
    -o "Debug::NoLocking=1"
  )
  mkdir -p "$TMP/lists/partial" "$TMP/cache/archives/partial"
  if ! apt-get "${apt_opts[@]}" "${lists[@]}" update >"$TMP/update.log" 2>&1; then
    sed 's/^/  /' "$TMP/update.log" >&2
    die "apt-get update into a private directory failed (are the Debian mirrors reachable?)"
  fi
  if ! download "${lists[@]}"; then
    sed 's/^/  /' "$TMP/apt.log" >&2
    die "apt-get download ${PACKAGES[*]} failed (see above)"
  fi
fi

shopt -s nullglob
debs=("$TMP"/debs/*.deb)
[ "${#debs[@]}" = "${#PACKAGES[@]}" ] || die "expected ${#PACKAGES[@]} .deb files, got: ${debs[*]:-none}"

# Unpack into a fresh directory and move it into place only when it works, so that an
# interrupted run never leaves a half-unpacked cache behind.
STAGE="$TMP/lua"
mkdir -p "$STAGE/bin"
for deb in "${debs[@]}"; do
  say "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$STAGE/root" || die "dpkg-deb -x $deb failed"
done
[ -x "$STAGE/root/usr/bin/lua5.4" ] || die "the lua5.4 package holds no usr/bin/lua5.4"
lib=$(find "$STAGE/root" -name 'liblua5.4.so.0' -print -quit)
[ -n "$lib" ] || die "the liblua5.4-0 package holds no liblua5.4.so.0"
libdir=$(dirname "${lib#"$STAGE/"}")

# The wrapper locates the unpacked tree relative to itself, so the cache can be moved.
cat >"$STAGE/bin/lua" <<EOF
#!/bin/sh
# Debian's lua5.4, unpacked by scripts/install-lua.sh (ctwa-operator); not installed system-wide.
here=\$(CDPATH= cd -- "\$(dirname -- "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$here/$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/root/usr/bin/lua5.4" "\$@"
EOF
chmod +x "$STAGE/bin/lua"

if ! works "$STAGE/bin/lua"; then
  "$STAGE/bin/lua" -e 'print(1)' >&2 || true
  die "the unpacked lua5.4 does not run (a shared library missing? see above)"
fi

rm -rf "$OUT"
mv "$STAGE" "$OUT" || die "cannot move the unpacked Lua to $OUT"
works "$WRAPPER" || die "$WRAPPER does not run after moving it into place"
say "Lua unpacked into $OUT ($("$WRAPPER" -v 2>&1 | head -n1))"
echo "$WRAPPER"
