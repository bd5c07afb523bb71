"""Desktop figures (a benchmark, not a test): cold start to first paint, idle memory of the app
with its WebKit processes, and memory with 1,000 targets in the vault list. Each figure runs side
by side with a baseline in the same run, alternating, and medians are reported:

* start and idle memory: the Portcullis app vs a bare WebKitGTK browser (MiniBrowser) showing a
  one-line page — what any WebKitGTK app pays before its own code;
* 1,000 targets: the same app with 1 target vs with 1,000 targets listed.

Drives the release binary through WebKitWebDriver (plain HTTP WebDriver, no extra packages).
Memory is PSS (proportional set size, from /proc/PID/smaps_rollup) summed over the process and
all its descendants, so shared libraries are counted once across the WebKit processes.
Run by tests/bench_desktop.sh (Xvfb + D-Bus + unlocked keyring)."""

import json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

APP = sys.argv[1]
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
N_TARGETS = int(os.environ.get("BENCH_TARGETS", "1000"))
N_SECRETS = int(os.environ.get("BENCH_SECRETS", "100000"))
# BENCH_ONLY=secrets: only the vault-at-scale figure (10 vs N_SECRETS secrets listed).
ONLY = os.environ.get("BENCH_ONLY", "")
SETTLE = 5.0  # seconds after first paint before memory is read


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wd(port, method, path, body=None, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")["value"]


def descendants(pid):
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pss_mib(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Session:
    """One browser/app process started by its own WebKitWebDriver."""

    def __init__(self, binary, args=(), env=None):
        self.port = free_port()
        self.driver = subprocess.Popen(["WebKitWebDriver", f"--port={self.port}"], env={**os.environ, **(env or {})},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.t0 = time.time()  # the process is spawned by the session request below
        caps = {"capabilities": {"alwaysMatch": {"webkitgtk:browserOptions": {"binary": binary, "args": list(args)}}}}
        # The app answers once its setup ran: a first-run seed (100,000 secrets) takes minutes.
        self.sid = wd(self.port, "POST", "/session", caps, timeout=3600)["sessionId"]

    def js(self, script):
        return wd(self.port, "POST", f"/session/{self.sid}/execute/sync", {"script": script, "args": []})

    def wait_js(self, script, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(script)
            if v:
                return v
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for: {script}")

    def first_paint_ms(self):
        fcp = self.wait_js("const p = performance.getEntriesByName('first-contentful-paint')[0];"
                           "return p ? performance.timeOrigin + p.startTime : null;")
        return fcp - self.t0 * 1000

    def memory_mib(self):
        time.sleep(SETTLE)
        return pss_mib([p for p in descendants(self.driver.pid) if p != self.driver.pid])  # not the driver

    def close(self):
        try:
            wd(self.port, "DELETE", f"/session/{self.sid}")
        except Exception:
            pass
        self.driver.kill()
        self.driver.wait()


def app_session(app_dir, seed=None):
    env = {"PORTCULLIS_APP_DIR": app_dir, "TAURI_WEBVIEW_AUTOMATION": "true"}
    if seed:
        env["PORTCULLIS_SEED"] = seed
    return Session(APP, env=env)


def seed_vault(root, n, key_file, host_key):
    """A standalone app with n targets, set up once (through the app's own first-run seed)."""
    app_dir = os.path.join(root, f"vault-{n}")
    targets = [{"name": f"host-{i:04d}", "host": f"10.0.{i // 250}.{i % 250 + 1}", "port": 22, "login": "deploy",
                "host_key": host_key, "key_file": key_file, "environment": ["prod", "staging", "dev"][i % 3],
                "tags": ["bench", f"rack-{i % 40}"], "description": f"bench target {i}"} for i in range(n)]
    seed = os.path.join(root, f"seed-{n}.json")
    json.dump({"passphrase": "bench passphrase", "standalone": {"admin": "ada", "targets": targets}}, open(seed, "w"))
    t = time.time()
    s = app_session(app_dir, seed)
    s.wait_js("return document.querySelector('[data-testid=whoami]') !== null", timeout=1800)
    s.close()
    print(f"  seeded {n} targets in {time.time() - t:.1f} s", file=sys.stderr)
    return app_dir


def vault_memory(app_dir, n):
    s = app_session(app_dir)
    s.wait_js(f"return document.querySelectorAll('[data-testid^=target-row-]').length === {n}", timeout=300)
    mem = s.memory_mib()
    s.close()
    return mem


def seed_secrets(root, n):
    """A standalone app with n generated secrets (imported through the app's first-run seed)."""
    app_dir = os.path.join(root, f"secrets-{n}")
    seed = os.path.join(root, f"seed-secrets-{n}.json")
    json.dump({"passphrase": "bench passphrase", "standalone": {"admin": "ada", "secrets": n}}, open(seed, "w"))
    t = time.time()
    s = app_session(app_dir, seed)
    s.wait_js("return document.querySelector('[data-testid=whoami]') !== null", timeout=3600)
    s.close()
    print(f"  seeded {n} secrets in {time.time() - t:.1f} s", file=sys.stderr)
    return app_dir


def secrets_memory(app_dir, scroll_rows):
    """PSS with the Secrets list open; then after scrolling `scroll_rows` rows down (pages load
    as it scrolls; only the rows in view are drawn)."""
    s = app_session(app_dir)
    s.wait_js("return document.querySelector('[data-testid=nav-secrets]') !== null", timeout=300)
    s.js("document.querySelector('[data-testid=nav-secrets]').click(); return true;")
    s.wait_js("return document.querySelectorAll('[data-testid^=secret-row-]').length > 0", timeout=300)
    opened = s.memory_mib()
    drawn = s.js("return document.querySelectorAll('[data-testid^=secret-row-]').length")
    scrolled = None
    if scroll_rows:
        end = time.time() + 600
        while time.time() < end:
            n = s.js("const v = document.querySelector('[data-testid=secrets-list]'); v.scrollTop = v.scrollHeight;"
                     "v.dispatchEvent(new Event('scroll')); return v.scrollHeight / 46;")
            if n >= scroll_rows:
                break
            time.sleep(0.3)
        scrolled = s.memory_mib()
    s.close()
    return opened, drawn, scrolled


def secrets_figures():
    root = tempfile.mkdtemp()
    few = seed_secrets(root, 10)
    many = seed_secrets(root, N_SECRETS)
    figures = {"few": [], "many": [], "scrolled": []}
    for i in range(RUNS):
        f, _, _ = secrets_memory(few, 0)
        m, drawn, sc = secrets_memory(many, 10000)
        figures["few"].append(f)
        figures["many"].append(m)
        figures["scrolled"].append(sc)
        print(f"  run {i + 1}: PSS with 10 secrets {f:.1f} / {N_SECRETS} secrets {m:.1f} MiB ({drawn} rows drawn);"
              f" scrolled through 10,000: {sc:.1f} MiB", file=sys.stderr)
    med = statistics.median
    print(f"Medians of {RUNS} alternating runs (release build, Xvfb):")
    print(f"  secrets listed: 10 {med(figures['few']):.1f} MiB, {N_SECRETS} {med(figures['many']):.1f} MiB"
          f" -> ratio {med(figures['many']) / med(figures['few']):.2f};"
          f" after scrolling through 10,000 of them {med(figures['scrolled']):.1f} MiB"
          f" -> ratio {med(figures['scrolled']) / med(figures['few']):.2f}")
    subprocess.run(["rm", "-rf", root])


def main():
    if ONLY == "secrets":
        return secrets_figures()
    root = tempfile.mkdtemp()
    page = os.path.join(root, "blank.html")
    open(page, "w").write("<!doctype html><title>baseline</title><p>baseline</p>")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(root, "key")], check=True)
    host_key = open(os.path.join(root, "key.pub")).read().strip()

    start = {"app": [], "webkit": []}
    idle = {"app": [], "webkit": []}
    for i in range(RUNS):
        s = app_session(os.path.join(root, f"fresh-{i}"))  # a fresh app: the first-run screen
        start["app"].append(s.first_paint_ms())
        s.wait_js("return document.querySelector('[data-testid=standalone-panel]') !== null")
        idle["app"].append(s.memory_mib())
        s.close()
        b = Session(MINIBROWSER, args=["--automation"])
        wd(b.port, "POST", f"/session/{b.sid}/url", {"url": f"file://{page}"})
        start["webkit"].append(b.first_paint_ms())
        idle["webkit"].append(b.memory_mib())
        b.close()
        print(f"  run {i + 1}: start app {start['app'][-1]:.0f} ms / webkit {start['webkit'][-1]:.0f} ms; "
              f"PSS app {idle['app'][-1]:.1f} / webkit {idle['webkit'][-1]:.1f} MiB", file=sys.stderr)

    one = seed_vault(root, 1, os.path.join(root, "key"), host_key)
    many = seed_vault(root, N_TARGETS, os.path.join(root, "key"), host_key)
    vault = {"1": [], "many": []}
    for i in range(RUNS):
        vault["1"].append(vault_memory(one, 1))
        vault["many"].append(vault_memory(many, N_TARGETS))
        print(f"  run {i + 1}: PSS with 1 target {vault['1'][-1]:.1f} / {N_TARGETS} targets {vault['many'][-1]:.1f} MiB",
              file=sys.stderr)

    med = statistics.median
    print(f"Medians of {RUNS} alternating runs (release build, Xvfb):")
    print(f"  start to first paint: app {med(start['app']):.0f} ms, bare WebKitGTK {med(start['webkit']):.0f} ms"
          f" -> ratio {med(start['app']) / med(start['webkit']):.2f}")
    print(f"  idle memory (PSS, app + WebKit processes): app {med(idle['app']):.1f} MiB,"
          f" bare WebKitGTK {med(idle['webkit']):.1f} MiB -> ratio {med(idle['app']) / med(idle['webkit']):.2f}")
    print(f"  vault listed: 1 target {med(vault['1']):.1f} MiB, {N_TARGETS} targets {med(vault['many']):.1f} MiB"
          f" -> ratio {med(vault['many']) / med(vault['1']):.2f}")
    subprocess.run(["rm", "-rf", root])


main()
