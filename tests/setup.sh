#!/usr/bin/env bash
# Installs the Debian packages Portcullis needs to build, run its demo, run its tests and build
# its packages (Debian 12 / Ubuntu 22.04 and 24.04). Safe to run again.
#
#   bash tests/setup.sh            install what is missing (apt-get; sudo when not root)
#   bash tests/setup.sh --list     print the packages, one a line, and why each is needed
#   bash tests/setup.sh --missing  print the packages dpkg does not report installed; install nothing
#
# Whether a package is there is dpkg's answer (`dpkg-query -W -f='${Status}'`), never a file or a
# command found on disk: a look-alike file (libclang-cpp14's libclang-cpp.so for libclang-dev's
# libclang.so) once made this script install nothing and the build fail 15 minutes later.
set -euo pipefail
export LC_ALL=C

# package | why (the crate or tool that needs it)
PACKAGES='
build-essential              | cc, ld and make for the crates that build C (ring, libsqlite3-sys)
pkg-config                   | finds the system libraries for the -sys crates
libclang-dev                 | bindgen (fido-hid-rs, security keys over USB) loads libclang.so
libudev-dev                  | libudev-sys (fido-hid-rs): security keys over USB
libdbus-1-dev                | libdbus-sys (Tauri: tao talks to the session bus)
libwebkit2gtk-4.1-dev        | webkit2gtk-sys (Tauri 2 desktop app on WebKitGTK)
libjavascriptcoregtk-4.1-dev | javascriptcore-rs-sys (Tauri 2)
libsoup-3.0-dev              | soup3-sys (Tauri 2)
libgtk-3-dev                 | gtk-sys, gdk-sys, atk-sys, pango-sys, gdk-pixbuf-sys, glib-sys (Tauri 2)
libayatana-appindicator3-dev | libappindicator-sys (the Tauri tray, in the lock for Linux; loaded at run time)
nodejs                       | builds the UI (Vite, svelte-check)
npm                          | installs the UI packages
openssh-server               | sshd: the throwaway targets of the demo and the tests
openssh-sftp-server          | the targets serve sftp, scp (SFTP mode) and rsync
openssh-client               | ssh, scp, sftp, ssh-keygen, ssh-agent: the user side of the tests
rsync                        | rsync through the gateway (tests)
dbus                         | a private session bus for the OS keyring (tests)
dbus-x11                     | dbus-launch for gnome-keyring in the private session (tests)
gnome-keyring                | the real OS keyring (Secret Service) under test
xvfb                         | a private X server for the desktop app (demo without a display, GUI tests)
xauth                        | xvfb-run
xclip                        | reads the X clipboard in the desktop test: a copied secret is there, then cleared
webkit2gtk-driver            | WebKitWebDriver: the GUI tests drive the real desktop binary
procps                       | pgrep (tests: no child left running)
python3                      | the children of `portcullis run` in the masking tests print secrets every which way
openssl                      | makes the TLS certificates and keys the vault tests add
bc                           | benchmark arithmetic (tests/bench*.sh)
python3-venv                 | a virtual environment for paramiko from PyPI (the interop test)
python3-yaml                 | reads deploy/compose.yaml to check it offline (no Docker here)
systemd                      | systemd-analyze verify checks the units in deploy/ and the package
postgresql                   | tests of the PostgreSQL store: a throwaway cluster (initdb, postgres, psql)
lintian                      | checks the .deb packages (tests/package.sh, the suite)
dpkg-dev                     | dpkg-shlibdeps and dpkg-architecture for the .deb packages
file                         | the Tauri bundler and lintian inspect binaries
'

packages() { printf '%s\n' "$PACKAGES" | sed -n 's/^\([a-z0-9][a-z0-9.+-]*\) *|.*/\1/p'; }

# What dpkg reports installed ("install ok installed"; not "deinstall", "half-configured" or
# absent), with what each such package provides: NodeSource's nodejs provides npm, and asking
# apt for Debian's npm beside it would replace that Node.js with an older one.
installed_names() {
  dpkg-query -W -f='${Package}\t${Status}\t${Provides}\n' 2>/dev/null |
    awk -F'\t' '$2 == "install ok installed" {
      print $1; n = split($3, p, /, */)
      for (i = 1; i <= n; i++) { sub(/ .*/, "", p[i]); if (p[i] != "") print p[i] } }' | sort -u
}

missing() { packages | sort -u | comm -23 - <(installed_names); }

case "${1:-}" in
  --list) printf '%s\n' "$PACKAGES" | sed -n 's/^\([a-z0-9][a-z0-9.+-]*\) *| *\(.*\)/\1\t\2/p'; exit 0 ;;
  --missing) missing; exit 0 ;;
  "") ;;
  *) echo "usage: bash tests/setup.sh [--list | --missing]" >&2; exit 2 ;;
esac

mapfile -t need < <(missing)
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "Installing: ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  mapfile -t still < <(missing)
  if [ ${#still[@]} -gt 0 ]; then
    echo "tests/setup.sh: apt-get finished but dpkg does not report these installed: ${still[*]}" >&2
    exit 1
  fi
fi

# The UI's tools (Vite 6, svelte-check, the Tauri CLI) need Node.js 18 or newer; Ubuntu 22.04's
# nodejs is 12.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ]; then
  echo "tests/setup.sh: the UI build needs Node.js 18 or newer (found: $(node --version 2>/dev/null || echo none))." >&2
  echo "  Install a newer nodejs package (e.g. from NodeSource) and run this again." >&2
  exit 1
fi

# sshd's privilege-separation directory (a tmpfs on most systems: gone after a reboot).
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
fi
