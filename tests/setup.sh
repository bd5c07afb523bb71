#!/usr/bin/env bash
# Installs the system packages Portcullis needs to build, run its demo and run its tests,
# when they are missing (Debian 12 / Ubuntu). Safe to run again.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have cc || need+=(build-essential)
have pkg-config || need+=(pkg-config)
have sshd || need+=(openssh-server)
have ssh-keygen || need+=(openssh-client)
have ssh || need+=(openssh-client)
have dbus-run-session || need+=(dbus)
have gnome-keyring-daemon || need+=(gnome-keyring)
have bc || need+=(bc)
have rsync || need+=(rsync)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
# The desktop app (Tauri 2 on WebKitGTK) and its GUI tests (WebKitWebDriver under Xvfb).
pkg-config --exists webkit2gtk-4.1 2>/dev/null || need+=(libwebkit2gtk-4.1-dev libjavascriptcoregtk-4.1-dev libsoup-3.0-dev)
pkg-config --exists librsvg-2.0 2>/dev/null || need+=(librsvg2-dev)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
[ -e /usr/include/xdo.h ] || need+=(libxdo-dev)
pkg-config --exists ayatana-appindicator3-0.1 2>/dev/null || need+=(libayatana-appindicator3-dev)
have WebKitWebDriver || need+=(webkit2gtk-driver)
have xvfb-run || need+=(xvfb xauth)
have npm || need+=(nodejs npm)
# Security keys over USB (webauthn-authenticator-rs → fido-hid-rs): bindgen against libudev.
pkg-config --exists libudev 2>/dev/null || need+=(libudev-dev)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sshd's privilege-separation directory.
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
fi
