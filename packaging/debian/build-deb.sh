#!/usr/bin/env bash
# Builds the Debian package from an already built binary (no second compile):
#   packaging/debian/build-deb.sh [PROFILE] [OUTPUT_DIR]
# PROFILE is a cargo profile (release by default; the test suite passes dev). Generates the
# man page and the bash/zsh/fish completions from the binary's clap definitions, then runs
# cargo-deb with --no-build. Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=${1:-release}
out=${2:-target/debian}
case "$profile" in
  dev | test) dir=debug ;;
  *) dir=$profile ;;
esac
target=${CARGO_TARGET_DIR:-target}
bin=$target/$dir/mailsync
[ -x "$bin" ] || { echo "build-deb: $bin not found; build it first (cargo build --profile $profile)" >&2; exit 1; }

assets=target/deb-assets
mkdir -p "$assets" "$out"
"$bin" man | gzip -9n > "$assets/mailsync.1.gz"
"$bin" completions bash > "$assets/mailsync.bash"
"$bin" completions zsh > "$assets/_mailsync"
"$bin" completions fish > "$assets/mailsync.fish"

cargo deb --no-build --profile "$profile" --strip --fast --quiet -o "$out"
