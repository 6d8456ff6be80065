#!/usr/bin/env bash
# Builds the deployable Azure Functions package: dist/acr-autoattach-functionapp.zip.
#
#   function-app/package.sh [--out DIR]
#
# The zip is the app root the Functions host expects (docs/app-root.md):
#   host.json                  customHandler.defaultExecutablePath names the binary
#   acr-autoattach             the handler, x86_64 Linux, mode 755 (the run bit is stored in the zip)
#   <Function>/function.json   one folder per function, from function-app/*/function.json
#
# The binary: `cargo build --release --locked --no-default-features` (no demo feature: the deployed handler carries
# no emulator), for x86_64-unknown-linux-musl when that target and a musl C compiler are installed (a static
# binary), else for x86_64-unknown-linux-gnu (dynamically linked against glibc; the script prints the newest glibc
# symbol version it needs). Environment:
#   PACKAGE_TARGET=<triple>    force the target (e.g. x86_64-unknown-linux-gnu)
#   PACKAGE_BINARY=<path>      package this binary instead of building one (tests use a stand-in)
#   CARGO_TARGET_DIR           honoured as cargo does
# Needs python3 (preferred: deterministic zip with explicit Unix modes) or zip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="$root/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out_dir="$2"; shift 2 ;;
    --out=*) out_dir="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "package.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
zip_path="$out_dir/acr-autoattach-functionapp.zip"

host_json="$root/host.json"
[ -f "$host_json" ] || { echo "package.sh: $host_json is missing" >&2; exit 1; }

# The executable's name in the app root is whatever host.json says the host starts.
exe_name="$(sed -n 's/.*"defaultExecutablePath"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$host_json" | head -n 1)"
case "$exe_name" in
  ""|*/*|.*) echo "package.sh: host.json customHandler.description.defaultExecutablePath must be a plain file name, got '$exe_name'" >&2; exit 1 ;;
esac

has_musl_cc() { command -v musl-gcc >/dev/null 2>&1 || command -v x86_64-linux-musl-gcc >/dev/null 2>&1; }

if [ -n "${PACKAGE_BINARY:-}" ]; then
  binary="$PACKAGE_BINARY"
  target="(given: PACKAGE_BINARY)"
  [ -f "$binary" ] || { echo "package.sh: PACKAGE_BINARY=$binary does not exist" >&2; exit 1; }
else
  if [ -n "${PACKAGE_TARGET:-}" ]; then
    target="$PACKAGE_TARGET"
  elif rustup target list --installed 2>/dev/null | grep -qx 'x86_64-unknown-linux-musl' && has_musl_cc; then
    target="x86_64-unknown-linux-musl"
  else
    target="x86_64-unknown-linux-gnu"
  fi
  if [ "$target" = "x86_64-unknown-linux-gnu" ] && [ "$(uname -m)" != "x86_64" ]; then
    echo "package.sh: building for $target needs an x86_64 Linux machine (or set PACKAGE_TARGET to an installed cross target)" >&2
    exit 1
  fi
  echo "package.sh: building acr-autoattach (release, --no-default-features) for $target" >&2
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
  if [ "$target" = "x86_64-unknown-linux-gnu" ]; then
    # The host's own target: the same build directory as `cargo build --release` (warm caches are reused).
    (cd "$root" && cargo build --release --locked --no-default-features --bin acr-autoattach)
    binary="$target_dir/release/acr-autoattach"
  else
    (cd "$root" && cargo build --release --locked --no-default-features --bin acr-autoattach --target "$target")
    binary="$target_dir/$target/release/acr-autoattach"
  fi
  [ -f "$binary" ] || { echo "package.sh: cargo did not produce $binary" >&2; exit 1; }
fi

stage="$(mktemp -d -t acr-autoattach-package.XXXXXX)"
trap 'rm -rf "$stage"' EXIT

cp "$host_json" "$stage/host.json"
cp "$binary" "$stage/$exe_name"
# Symbols are not needed to run and make up much of the size; strip the copy when binutils are there.
if [ -z "${PACKAGE_BINARY:-}" ] && command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded "$stage/$exe_name" 2>/dev/null || true
fi
chmod 0755 "$stage/$exe_name"
chmod 0644 "$stage/host.json"

functions=()
for fj in "$root"/function-app/*/function.json; do
  [ -f "$fj" ] || continue
  fn="$(basename "$(dirname "$fj")")"
  mkdir -p "$stage/$fn"
  cp "$fj" "$stage/$fn/function.json"
  chmod 0755 "$stage/$fn"
  chmod 0644 "$stage/$fn/function.json"
  functions+=("$fn")
done
[ "${#functions[@]}" -gt 0 ] || { echo "package.sh: no function-app/*/function.json found" >&2; exit 1; }

rm -f "$zip_path"
if command -v python3 >/dev/null 2>&1; then
  # Explicit Unix modes (external_attr high 16 bits) and system "Unix" (create_system 3), fixed timestamps and
  # sorted entries: the same inputs give the same bytes.
  python3 - "$stage" "$zip_path" <<'PY'
import os, stat, sys, zipfile
stage, zip_path = sys.argv[1], sys.argv[2]
entries = []
for dirpath, dirnames, filenames in os.walk(stage):
    dirnames.sort()
    for name in sorted(filenames):
        full = os.path.join(dirpath, name)
        entries.append((os.path.relpath(full, stage), full))
entries.sort()
with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for rel, full in entries:
        mode = stat.S_IMODE(os.stat(full).st_mode)
        info = zipfile.ZipInfo(rel.replace(os.sep, "/"), date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3
        info.external_attr = (stat.S_IFREG | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(full, "rb") as f:
            zf.writestr(info, f.read())
PY
elif command -v zip >/dev/null 2>&1; then
  (cd "$stage" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | zip -q -X -9 "$zip_path" -@)
else
  echo "package.sh: needs python3 or zip to write the package" >&2
  exit 1
fi

size_bytes="$(wc -c <"$zip_path" | tr -d ' ')"
binary_bytes="$(wc -c <"$stage/$exe_name" | tr -d ' ')"
glibc_note=""
if [ "${target:-}" = "x86_64-unknown-linux-gnu" ] && command -v objdump >/dev/null 2>&1; then
  newest="$(objdump -T "$stage/$exe_name" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -V -u | tail -n 1 || true)"
  [ -n "$newest" ] && glibc_note=", needs glibc >= ${newest#GLIBC_}"
fi
echo "package.sh: target $target$glibc_note; functions: ${functions[*]}"
echo "package.sh: $exe_name $(awk -v b="$binary_bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }') uncompressed"
echo "$zip_path $size_bytes bytes ($(awk -v b="$size_bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
