#!/usr/bin/env bash
# Builds the installable packages into target/packages/:
#   portcullis_VERSION_amd64.deb           the `portcullis` command: CLI, server (with a systemd
#                                          unit, portcullis-server.service) and gateway
#   Portcullis_VERSION_amd64.deb           the desktop app, from Tauri's bundler
# and checks both with lintian (errors fail the build).
#
#   bash tests/package.sh            release build (what you install)
#   bash tests/package.sh --debug    package the binaries the test suite already built
#                                    (target/debug): the suite checks the packaging this way
#                                    without a second, release build of everything
# An AppImage is not built: Tauri's AppImage bundler downloads its tools at build time.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
  --debug) profile=debug ;;
  "") ;;
  *) echo "usage: bash tests/package.sh [--debug]" >&2; exit 2 ;;
esac

bash tests/setup.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out="$PWD/target/packages"
mkdir -p "$out"

if [ "$profile" = release ]; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  cargo build --release --locked -p portcullis-cli -p portcullis-desktop
fi
bin="$PWD/target/$profile"
for b in portcullis portcullis-desktop; do
  [ -x "$bin/$b" ] || { echo "tests/package.sh: $bin/$b is missing; build it first (bash tests/run.sh builds target/debug)" >&2; exit 1; }
done

# --- portcullis (CLI, server, gateway) --------------------------------------------------------
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/portcullis"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/doc/portcullis"
install -m 0755 "$bin/portcullis" "$root/usr/bin/portcullis"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/portcullis"
install -m 0644 crates/cli/packaging/portcullis-server.service "$root/lib/systemd/system/portcullis-server.service"
install -m 0644 crates/cli/packaging/copyright "$root/usr/share/doc/portcullis/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
  crates/cli/packaging/changelog >"$stage/changelog"
gzip -9n <"$stage/changelog" >"$root/usr/share/doc/portcullis/changelog.gz"
install -m 0755 crates/cli/packaging/postinst "$root/DEBIAN/postinst"
install -m 0755 crates/cli/packaging/postrm "$root/DEBIAN/postrm"
# Depends: the shared libraries the binary links, as dpkg-shlibdeps finds them.
mkdir -p "$stage/debian" && touch "$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O "$root/usr/bin/portcullis" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: portcullis
Version: $version
Architecture: $arch
Maintainer: Portcullis developers <portcullis@example.invalid>
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }adduser
Section: admin
Priority: optional
Homepage: https://example.invalid/portcullis
Description: privileged access management: vault, just-in-time access, brokered SSH
 One binary for the Portcullis control server (SQLite, a systemd unit:
 portcullis-server.service), the gateway that brokers and records SSH sessions
 so that credentials never reach users' machines, and the command line for
 admins, requesters, approvers, auditors and pipelines.
CONTROL
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"
cli_deb="$out/portcullis_${version}_${arch}.deb"
# xz for what people install; the suite's check packs its larger debug binary quickly instead.
compress=(-Zxz)
[ "$profile" = debug ] && compress=(-Zgzip -z1)
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$cli_deb" >/dev/null

# --- the desktop app, from Tauri's bundler ---------------------------------------------------
# The bundler packs target/PROFILE/portcullis-desktop as it finds it (and patches it in place):
# give it a stripped copy in a target directory of its own, so the build's binary stays as built.
bundle_target="$stage/target"
install -D -m 0755 "$bin/portcullis-desktop" "$bundle_target/$profile/portcullis-desktop"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$bundle_target/$profile/portcullis-desktop"
desktop_shlibs=$(cd "$stage" && dpkg-shlibdeps -O "$bundle_target/$profile/portcullis-desktop" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
depends_json=$(printf '["%s"]' "$(sed 's/, */","/g' <<<"$desktop_shlibs")")
sed "s/^portcullis (/portcullis-desktop (/" "$stage/changelog" >"$stage/desktop-changelog"
deb_extra=$(printf '{"bundle":{"linux":{"deb":{"depends":%s,"changelog":"%s","files":{"/usr/share/doc/portcullis-desktop/copyright":"%s"}}}}}' \
  "$depends_json" "$stage/desktop-changelog" "$PWD/crates/cli/packaging/copyright")
bundle_flags=(--bundles deb --config tauri.bundle.json --config "$deb_extra" --ci)
[ "$profile" = debug ] && bundle_flags+=(--debug)
(cd src-tauri && CARGO_TARGET_DIR="$bundle_target" ../ui/node_modules/.bin/tauri bundle "${bundle_flags[@]}") \
  >"$stage/bundle.log" 2>&1 || {
  cat "$stage/bundle.log" >&2
  exit 1
}
desktop_deb="$out/portcullis-desktop_${version}_${arch}.deb"
cp "$bundle_target/$profile/bundle/deb/portcullis-desktop_${version}_${arch}.deb" "$desktop_deb"

# --- lintian: no errors -----------------------------------------------------------------------
status=0
for deb in "$cli_deb" "$desktop_deb"; do
  report=$(lintian --no-tag-display-limit "$deb" 2>&1 || true)
  if grep -q '^E:' <<<"$report"; then
    echo "lintian: errors in $(basename "$deb"):" >&2
    grep '^E:' <<<"$report" >&2
    status=1
  fi
  printf '%s\t%s KiB\t%s lintian warnings\n' "$(basename "$deb")" "$(($(stat -c %s "$deb") / 1024))" "$(grep -c '^W:' <<<"$report" || true)"
done
exit $status
