# Shared by demo.sh and bench.sh: a scratch folder ($work) removed on exit together with the
# background processes listed in $pids, free ports, and a throwaway sshd target ($ssh_port).

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

# start_sshd LOGLEVEL: an OpenSSH server on a free loopback port whose only login key is
# $work/sshd/credential (the credential Portcullis will keep).
start_sshd() {
  mkdir -p "$work/sshd"
  ssh-keygen -q -t ed25519 -N '' -C target-host -f "$work/sshd/host_key"
  ssh-keygen -q -t ed25519 -N '' -C target-credential -f "$work/sshd/credential"
  cp "$work/sshd/credential.pub" "$work/sshd/authorized_keys"
  ssh_port=$(free_port)
  cat >"$work/sshd/config" <<CFG
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/sshd/host_key
PidFile $work/sshd/pid
AuthorizedKeysFile $work/sshd/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
MaxStartups 200
MaxSessions 200
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ${1:-INFO}
CFG
  "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$work/sshd/config" 2>"$work/sshd/log" & pids+=($!)
  wait_port "$ssh_port"
}
