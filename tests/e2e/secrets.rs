//! The vault through the real binary and server: typed secrets added from stdin and files
//! (never from arguments), versions, check-out to a terminal only, and `portcullis run` with
//! every form of a value masked in its child's output, whatever the child does with it.

use std::path::Path;

use base64::Engine;

use crate::harness::*;

fn canary(tag: &str) -> String {
    format!("{tag}-{}", hex::encode(rand::random::<[u8; 10]>()))
}

/// Every file of the server's data directory (database, WAL, logs) and every output so far.
fn assert_nowhere(world: &World, value: &str, outputs: &str) {
    let needle = value.as_bytes();
    for file in files_under(&world.root.path().join("server")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} holds the value", file.display());
    }
    assert!(!outputs.contains(value), "an output holds the value");
    let log = world.server.log();
    assert!(!log.windows(needle.len()).any(|w| w == needle), "the server's log holds the value");
}

#[test]
fn secrets_are_added_from_stdin_and_files_never_from_arguments() {
    // Trace-level logs on every side: the canary below must be in none of them.
    let world = World::with_log("trace");
    let root = world.root.path();
    let admin = &world.admin;
    let password = canary("pw");

    // A value on the command line is refused, with where to put it instead.
    admin.run(&["secret", "add", "db", "--type", "password", "--value", &password]).fails_with("shell history");
    admin
        .run(&["secret", "add", "db", "--type", "password", "--field", &format!("password={password}")])
        .fails_with("--value-stdin");
    // Oversized, not UTF-8, a certificate with another key: refused, nothing stored.
    let big = root.join("big");
    std::fs::write(&big, vec![b'a'; 70 * 1024]).unwrap();
    admin
        .run(&["secret", "add", "big", "--type", "note", "--value-file", big.to_str().unwrap()])
        .fails_with("larger than 65536 bytes");
    admin
        .run_with_stdin(&["secret", "add", "db", "--type", "password", "--value-stdin"], b"\xff\xfe\n")
        .fails_with("not UTF-8");
    let (cert, key) = tls_files(root, "one");
    let (_, other_key) = tls_files(root, "two");
    admin
        .run(&[
            "secret",
            "add",
            "web-cert",
            "--type",
            "tls",
            "--field",
            &format!("certificate=@{}", cert.display()),
            "--field",
            &format!("private_key=@{}", other_key.display()),
        ])
        .fails_with("does not match the certificate");
    assert!(admin.run(&["secret", "list"]).ok().stdout.contains("(none)"));

    // From stdin (one line: its newline dropped) and from files.
    let added = admin
        .run_with_stdin(
            &[
                "secret",
                "add",
                "db",
                "--type",
                "password",
                "--env",
                "prod",
                "--folder",
                "billing",
                "--tag",
                "pci",
                "--field",
                "username=billing",
                "--value-stdin",
                "--revealable",
                "--reason",
                "first",
            ],
            format!("{password}\n").as_bytes(),
        )
        .ok();
    assert!(added.stdout.contains("Added password secret db (version 1"), "{}", added.stdout);
    admin
        .run(&[
            "secret",
            "add",
            "web-cert",
            "--type",
            "tls",
            "--field",
            &format!("certificate=@{}", cert.display()),
            "--field",
            &format!("private_key=@{}", key.display()),
        ])
        .ok();
    let listed = admin.run(&["secret", "list"]).ok().stdout;
    assert!(listed.contains("db") && listed.contains("password") && listed.contains("billing"), "{listed}");
    assert!(listed.contains("web-cert") && listed.contains("tls"), "{listed}");
    let shown = admin.run(&["secret", "show", "web-cert"]).ok().stdout;
    assert!(shown.contains("subject:      CN=one.example") && shown.contains("names:        one.example"), "{shown}");
    let filtered = admin.run(&["secret", "list", "--type", "tls", "--search", "web"]).ok().stdout;
    assert!(filtered.contains("web-cert") && !filtered.contains("billing"), "{filtered}");

    // A new value is a new version; restoring the first makes a third without showing either.
    let second = canary("pw2");
    admin
        .run_with_stdin(&["secret", "edit", "db", "--value-stdin", "--reason", "rotated by hand"], second.as_bytes())
        .ok();
    let restored = admin.run(&["secret", "restore", "db", "1", "--reason", "v2 broke billing"]).ok().stdout;
    assert!(restored.contains("now at version 3") && restored.contains("without being shown"), "{restored}");
    let history = admin.run(&["secret", "history", "db"]).ok().stdout;
    assert!(history.contains("v2 broke billing") && history.contains("rotated by hand"), "{history}");
    assert!(history.lines().nth(1).unwrap().trim_start().starts_with("3*"), "{history}");

    let everything = world.transcript.bytes();
    let outputs = String::from_utf8_lossy(&everything);
    assert_nowhere(&world, &password, &outputs);
    assert_nowhere(&world, &second, &outputs);
}

/// A self-signed certificate and its key for `name.example`, as openssl writes them.
fn tls_files(root: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = root.join(format!("{name}.crt"));
    let key = root.join(format!("{name}.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
        ])
        .arg(format!("/CN={name}.example"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}.example"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

#[test]
fn run_masks_every_form_of_a_secret_in_its_childs_output() {
    let world = World::new();
    let root = world.root.path();
    // Regex metacharacters and a quote: plain bytes to the masker, escaped by JSON.
    let token = format!("{}+(a|b)*[x]$\"{}", canary("tok"), canary("end"));
    world
        .admin
        .run_with_stdin(&["secret", "add", "deploy-token", "--type", "api-token", "--value-stdin"], token.as_bytes())
        .ok();
    let key_file = root.join("id_deploy");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f"])
        .arg(&key_file)
        .status()
        .unwrap();
    assert!(keygen.success());
    world
        .admin
        .run(&["secret", "add", "deploy-key", "--type", "ssh-key", "--value-file", key_file.to_str().unwrap()])
        .ok();
    let key_text = std::fs::read_to_string(&key_file).unwrap();

    // Without a grant to use them: refused, nothing runs.
    let marker = root.join("ran");
    world
        .alice
        .run(&["run", "--secret", "TOKEN=deploy-token", "--", "touch", marker.to_str().unwrap()])
        .fails_with("portcullis request deploy-token");
    assert!(!marker.exists());
    for name in ["deploy-token", "deploy-key"] {
        let id =
            world.alice.run(&["request", name, "--use", "--duration", "10m", "--reason", "deploy"]).ok().last_line();
        world.bob.run(&["approve", &id]).ok();
    }

    let secret_file = root.join("key-for-child");
    let script = r#"
import base64, json, os, sys, time, urllib.parse
t = os.environ["TOKEN"].encode()
out = sys.stdout.buffer
def say(label, b): out.write(label.encode() + b": " + b + b"\n"); out.flush()
say("raw", t)
for b in t:  # one byte per write
    out.write(bytes([b])); out.flush(); time.sleep(0.002)
out.write(b"\n")
say("b64+suffix", base64.b64encode(t + b":and-more"))
say("b64 prefix1", base64.b64encode(b"x" + t))
say("b64 prefix2 url", base64.urlsafe_b64encode(b"xy" + t).rstrip(b"="))
say("basic", base64.b64encode(b"ci:" + t))
say("json", json.dumps({"token": t.decode()}).encode())
say("hex", t.hex().encode())
say("url", urllib.parse.quote(t.decode(), safe="").encode())
key = open(sys.argv[1], "rb").read()
sys.stderr.buffer.write(b"key on stderr:\n" + key); sys.stderr.flush()
say("key b64", base64.b64encode(key))
say("key json", json.dumps(key.decode()).encode())
sys.exit(7)
"#;
    let ran = world.alice.run(&[
        "run",
        "--secret",
        "TOKEN=deploy-token",
        "--file",
        &format!("{}=deploy-key", secret_file.display()),
        "--",
        // Debian's (tests/setup.sh), not whichever python3 is first on this machine's PATH.
        "/usr/bin/python3",
        "-c",
        script,
        secret_file.to_str().unwrap(),
    ]);
    assert_eq!(ran.status, 7, "the exit status passes through\n{}\n{}", ran.stdout, ran.stderr);
    assert!(!secret_file.exists(), "the secret file outlived the command");
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    for label in ["raw", "b64+suffix", "b64 prefix1", "b64 prefix2 url", "basic", "json", "hex", "url", "key b64"] {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{label}: ")))
            .unwrap_or_else(|| panic!("{label} missing:\n{}", ran.stdout));
        assert!(line.contains("***"), "{label} not masked: {line}");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let forbidden = [
        token.clone(),
        b64.encode(token.as_bytes())[..24].to_string(),
        hex::encode(token.as_bytes())[..24].to_string(),
        token[..12].to_string(),
    ];
    for form in &forbidden {
        assert!(!output.contains(form.as_str()), "{form:?} leaked:\n{output}");
    }
    for line in key_text.lines().filter(|l| l.len() >= 6 && !l.starts_with("-----")) {
        assert!(!output.contains(line), "a line of the key leaked:\n{output}");
    }
    assert!(!output.contains(&b64.encode(key_text.as_bytes())[..40]), "the key's base64 leaked");

    // The audit has the command, the versions and how it ended; never the value.
    let events = world.bob.run(&["audit", "events", "--kind", "secret_used,secret_use_ended"]).ok().stdout;
    assert_eq!(events.matches("secret_used").count(), 2, "{events}");
    assert!(events.contains("/usr/bin/python3 -c") && events.contains("\"exit_status\":7"), "{events}");
    assert!(!events.contains(&token));

    // Signals pass on to the child; its end by a signal is 128 + N.
    let child = world.alice.spawn(&["run", "--secret", "TOKEN=deploy-token", "--", "sleep", "30"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let stopped = world.alice.wait(child);
    assert_eq!(stopped.status, 143, "{}", stopped.stderr);
}

#[test]
fn a_checkout_goes_to_a_terminal_is_exclusive_and_ends_at_checkin() {
    let world = World::with_log("trace");
    let password = canary("co");
    world
        .admin
        .run_with_stdin(
            &["secret", "add", "db", "--type", "password", "--revealable", "--value-stdin"],
            password.as_bytes(),
        )
        .ok();
    world.alice.run(&["secret", "checkout", "db", "--allow-pipe"]).fails_with("no access to db");
    let id = world.alice.run(&["request", "db", "--duration", "10m", "--reason", "fix billing"]).ok().last_line();
    world.bob.run(&["approve", &id]).ok();
    // Standard output here is a pipe: refused unless asked for, and then said in the audit.
    world.alice.run(&["secret", "checkout", "db"]).fails_with("not a terminal");
    let out = world.alice.run(&["secret", "checkout", "db", "--allow-pipe"]).ok();
    assert_eq!(out.stdout, password, "the value alone on stdout");
    assert!(out.stderr.contains("Checked out db (version 1)"), "{}", out.stderr);
    world.bob.run(&["secret", "checkin", "db"]).fails_with("checked out by alice");
    world.alice.run(&["secret", "checkin", "db"]).ok();
    let events = world.bob.run(&["audit", "events", "--kind", "secret_revealed,secret_checked_in"]).ok().stdout;
    assert!(events.contains("\"to\":\"pipe\"") && events.contains("\"ended_by\":\"checkin\""), "{events}");
    // Where it was revealed (alice's stdout, once) and nowhere else: no log, no database.
    let everything = String::from_utf8_lossy(&world.transcript.bytes()).into_owned();
    assert_eq!(everything.matches(password.as_str()).count(), 1, "the value outside the one reveal");
    assert_nowhere(&world, &password, "");
}

#[test]
fn imports_are_all_or_nothing_and_exports_hold_no_value() {
    let world = World::new();
    let root = world.root.path();
    let admin = &world.admin;
    let write = |name: &str, bytes: &[u8]| {
        let path = root.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let pw = canary("imp");
    // Each way a file goes wrong: reported by place, nothing imported, no value quoted.
    let broken = [
        (
            "dup.csv",
            format!("name,type,password\ndb,password,{pw}\ndb,password,{pw}x\n").into_bytes(),
            "the name db is taken by line 2 too",
        ),
        (
            "short.csv",
            format!("name,type,password\ndb,password,{pw}\nweb\n").into_bytes(),
            "line 3: the row has 1 columns",
        ),
        ("latin1.csv", b"name,type,password\ncaf\xe9,password,x\n".to_vec(), "not UTF-8"),
        ("bell.csv", format!("name,type,password\ndb,password,{pw}\x07\n").into_bytes(), "control character"),
    ];
    for (file, bytes, why) in broken {
        let out = admin.run(&["import", &write(file, &bytes), "--format", "csv"]).fails_with(why);
        assert!(out.stderr.contains("nothing imported"), "{}", out.stderr);
        assert!(!out.stderr.contains(&pw), "a value in the report");
    }
    assert!(admin.run(&["secret", "list"]).ok().stdout.contains("(none)"));

    let csv = write(
        "vault.csv",
        format!("name,type,env,folder,tags,password,username\ndb,password,prod,billing,pci;db,{pw},app\n").as_bytes(),
    );
    let dry = admin.run(&["import", &csv, "--dry-run"]).ok().stdout;
    assert!(dry.contains("Dry run: all 1 secrets would be imported"), "{dry}");
    assert!(admin.run(&["secret", "list"]).ok().stdout.contains("(none)"));
    admin.run(&["import", &csv]).ok();
    // The server refuses a name already taken: the whole file again, nothing from it.
    let again = write("again.csv", format!("name,type,password\nnew-one,password,{pw}\ndb,password,{pw}\n").as_bytes());
    admin.run(&["import", &again]).fails_with("item 2 (db): the name is taken");
    assert!(!admin.run(&["secret", "list"]).ok().stdout.contains("new-one"));

    let bitwarden = write(
        "bw.json",
        format!(
            r#"{{"encrypted": false, "folders": [{{"id": "f", "name": "Cloud"}}], "items": [
              {{"type": 1, "name": "AWS root", "folderId": "f", "login": {{"username": "root", "password": "{pw}-aws"}}}},
              {{"type": 3, "name": "Visa", "card": {{}}}}]}}"#
        )
        .as_bytes(),
    );
    let out = admin.run(&["import", &bitwarden, "--format", "bitwarden", "--env", "prod"]).ok();
    assert!(
        out.stdout.contains("Imported 1 secrets; 1 skipped") && out.stderr.contains("\"Visa\" is a card"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let keepass = write(
        "kp.csv",
        format!("\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\"\n\"Root/Net\",\"Core Router\",\"admin\",\"{pw}-kp\",\"\",\"\"\n").as_bytes(),
    );
    admin.run(&["import", &keepass, "--format", "keepassxc"]).ok();
    let listed = admin.run(&["secret", "list"]).ok().stdout;
    for name in ["db", "aws-root", "core-router"] {
        assert!(listed.contains(name), "{name} missing:\n{listed}");
    }
    assert!(admin.run(&["secret", "show", "aws-root"]).ok().stdout.contains("folder:       cloud"));

    let exported = root.join("export.csv");
    admin.run(&["export", "--out", exported.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.starts_with("name,type,env,folder") && text.contains("core-router,password"), "{text}");
    let json = admin.run(&["export", "--format", "json"]).ok().stdout;
    assert_eq!(json.lines().count(), 3);
    let everything = world.transcript.bytes();
    assert_nowhere(&world, &pw, &format!("{text}{json}{}", String::from_utf8_lossy(&everything)));
}

/// A pipeline: a service account made by one admin and confirmed by another, enrolled with
/// nothing on disk (its identity in the job's environment), using a staging token with no
/// human approval — and a production one only after an approver's. No person's account gets
/// that: a requester under the same policy still needs an approval, and nobody is made a
/// service account after the fact.
#[test]
fn a_pipeline_uses_secrets_by_policy_without_a_person_and_production_with_one() {
    let world = World::new();
    let root = world.root.path();
    let policy = root.join("policy.cedar");
    std::fs::write(
        &policy,
        format!(
            "{}\n{}",
            world.admin.run(&["policy", "show"]).ok().stdout,
            r#"
@id("ci-uses-staging-tokens")
@approvals("0")
permit (principal, action == Portcullis::Action::"use", resource in Portcullis::Environment::"staging")
when { resource.kind == "api-token" && context.duration <= duration("1h") };

@id("ci-uses-prod-with-an-approval")
@approvals("1")
permit (principal, action == Portcullis::Action::"use", resource in Portcullis::Environment::"prod")
when { principal.roles.contains("service") };
"#
        ),
    )
    .unwrap();
    world.admin.run(&["policy", "set", policy.to_str().unwrap()]).ok();
    for (name, env) in [("staging-token", "staging"), ("prod-token", "prod")] {
        let value = format!("{name}-{}", canary("v"));
        world
            .admin
            .run_with_stdin(
                &["secret", "add", name, "--type", "api-token", "--env", env, "--value-stdin"],
                value.as_bytes(),
            )
            .ok();
    }
    // Made by one admin, its code goes to a second; nobody becomes a service account later.
    let added = world.admin.run(&["user", "add", "ci", "--role", "service"]).ok().stdout;
    assert!(added.contains("is a service account") && !added.contains("pc1-"), "{added}");
    world.admin.run(&["user", "add", "both", "--role", "service", "--role", "admin"]).fails_with("service role alone");
    world.admin.run(&["user", "roles", "alice", "--role", "service"]).fails_with("made as one");
    let code = world.second_admin().run(&["user", "confirm", "ci"]).ok().last_line();
    let code_file = root.join("ci.code");
    std::fs::write(&code_file, &code).unwrap();
    let identity_file = root.join("ci.identity");
    let nowhere = root.join("no-home");
    let enrolled = base_command("warn")
        .env("PORTCULLIS_HOME", &nowhere)
        .args(["enroll", "--server", &world.server.url, "--code-file", code_file.to_str().unwrap()])
        .args(["--identity-out", identity_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    assert!(!nowhere.exists(), "a pipeline's enrolment wrote a home");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&identity_file).unwrap().permissions().mode() & 0o777, 0o600);
    let identity = std::fs::read_to_string(&identity_file).unwrap().trim().to_string();
    let job = |args: &[&str]| {
        let out = base_command("warn")
            .env("PORTCULLIS_HOME", &nowhere)
            .env("PORTCULLIS_IDENTITY", &identity)
            .args(args)
            .output()
            .unwrap();
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    };
    assert!(job(&["whoami"]).ok().stdout.contains("user:    ci"));

    // Staging: granted on the spot by policy; the job runs with it at once.
    let asked = job(&["request", "staging-token", "--duration", "30m", "--reason", "pipeline 812"]).ok();
    assert!(asked.stdout.contains("use of staging-token"), "{}", asked.stdout);
    let ran = job(&[
        "run",
        "--secret",
        "TOKEN=staging-token",
        "--",
        "sh",
        "-c",
        "test -n \"$TOKEN\" && echo deployed $TOKEN",
    ])
    .ok();
    assert_eq!(ran.stdout, "deployed ***\n");
    let events = world.bob.run(&["audit", "events", "--kind", "request_approved_by_policy"]).ok().stdout;
    assert!(events.contains("ci-uses-staging-tokens"), "{events}");

    // Production: an approver first.
    let id = job(&["request", "prod-token", "--duration", "30m", "--reason", "release 4.2"]).ok().last_line();
    job(&["run", "--secret", "TOKEN=prod-token", "--", "true"]).fails_with("still waiting for approval");
    world.bob.run(&["approve", &id]).ok();
    job(&["run", "--secret", "TOKEN=prod-token", "--", "true"]).ok();
    // A pipeline asks for nothing but use.
    job(&["request", "prod-token", "--checkout", "--duration", "5m", "--reason", "x"]).fails_with("service account");

    // A person under the zero-approval policy still waits for another person.
    let human =
        world.alice.run(&["request", "staging-token", "--use", "--duration", "30m", "--reason", "by hand"]).ok();
    assert!(human.stdout.contains("waiting for an approver"), "{}", human.stdout);
    world.alice.run(&["run", "--secret", "TOKEN=staging-token", "--", "true"]).fails_with("still waiting for approval");
}

/// The rotation test's account, with `password` and no minimum age between changes.
fn rotation_account(user: &str, password: &str) {
    local_account(user, password);
    set_min_days(user, 0);
}

/// How many days must pass between password changes (`passwd` refuses a change before).
fn set_min_days(user: &str, days: u32) {
    let status = std::process::Command::new("chage").args(["-m", &days.to_string(), user]).status().unwrap();
    assert!(status.success());
}

/// Whether `password` is `user`'s password now, as the system checks it (its shadow hash).
fn is_password_of(user: &str, password: &str) -> bool {
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let hash = shadow.lines().find_map(|l| l.strip_prefix(&format!("{user}:"))).unwrap().split(':').next().unwrap();
    let mut check = std::process::Command::new("/usr/bin/python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; h=sys.argv[1]; sys.exit(0 if crypt.crypt(sys.stdin.read(), h) == h else 1)",
        ])
        .arg(hash)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), password.as_bytes()).unwrap();
    drop(check.stdin.take());
    check.wait().unwrap().success()
}

/// Resets the account's password rules however the test ends.
struct MinDaysBack(&'static str);
impl Drop for MinDaysBack {
    fn drop(&mut self) {
        set_min_days(self.0, 0);
    }
}

/// CyberArk's exclusive check-out, with proof: a password bound to a target is what the gateway
/// logs in with; when its check-out ends, the gateway sets a fresh one on the real account
/// (`passwd` through a PTY), logs in with it, and only then is it the vault's next version —
/// the revealed one no longer opens the account. A change the target refuses keeps the old
/// password in the vault and on the target, and is an alarm.
#[test]
fn a_checked_in_password_is_rotated_on_its_target_and_a_refused_rotation_keeps_the_old_one() {
    let user = "portcullis-rot";
    let first = canary("rot");
    rotation_account(user, &first);
    let _back = MinDaysBack(user);
    let sshd = Sshd::start();
    let world = World::with_log("debug");
    let port = sshd.port.to_string();
    let target = [
        "target",
        "add",
        "rot-host",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--login",
        user,
        "--password-stdin",
        "--host-key",
        &sshd.host_key_pub,
    ];
    world.admin.run_with_stdin(&target, format!("{first}\n").as_bytes()).ok();
    // Only a password secret is a target's password.
    world
        .admin
        .run_with_stdin(
            &["secret", "add", "rot-token", "--type", "api-token", "--target", "rot-host", "--value-stdin"],
            b"x",
        )
        .fails_with("only a password secret is bound to a target");
    let bind =
        ["secret", "add", "rot-pw", "--type", "password", "--target", "rot-host", "--revealable", "--value-stdin"];
    world.admin.run_with_stdin(&bind, first.as_bytes()).ok();
    assert!(world.admin.run(&["secret", "show", "rot-pw"]).ok().stdout.contains("target:       rot-host"));
    // The target's password lives in the vault now: it is changed there, not on the target.
    world
        .admin
        .run_with_stdin(&["target", "edit", "rot-host", "--password-stdin"], b"other\n")
        .fails_with("is the vault secret rot-pw");

    // alice checks it out (the old password, shown once), then checks it in: rotated.
    let id = world.alice.run(&["request", "rot-pw", "--duration", "10m", "--reason", "break glass"]).ok().last_line();
    world.bob.run(&["approve", &id]).ok();
    let shown = world.alice.run(&["secret", "checkout", "rot-pw", "--allow-pipe"]).ok().stdout;
    assert_eq!(shown, first);
    let back = world.alice.run(&["secret", "checkin", "rot-pw"]);
    assert_eq!(
        back.status,
        0,
        "{}\n{}",
        back.stderr.lines().filter(|l| l.contains("rotation of")).collect::<String>(),
        sshd.log()
    );
    let back = back.stdout;
    assert!(back.contains("Rotated: rot-pw is now at version 2"), "{back}");
    assert!(!is_password_of(user, &first), "the revealed password still opens the account");
    let history = world.admin.run(&["secret", "history", "rot-pw"]).ok().stdout;
    assert!(history.contains("rotated on rot-host by gateway embedded (checkin)"), "{history}");

    // What the vault now holds is what the account has: seen by checking it out again (the
    // same grant), checked against the system's own hash, and used by the gateway to log in.
    let second = world.alice.run(&["secret", "checkout", "rot-pw", "--allow-pipe"]).ok().stdout;
    assert_ne!(second, first);
    assert_eq!(second.len(), 24, "a generated password");
    assert!(is_password_of(user, &second), "the vault's version 2 is not the account's password");
    world.grant("rot-host", "10m");
    let who = world.alice.run(&["ssh", "rot-host", "--", "whoami"]).ok();
    assert_eq!(who.stdout.trim(), user);

    // The account refuses a change now (a minimum age): the check-in's rotation fails at
    // `change`, the vault keeps version 2 — still the account's password — and it is an alarm.
    set_min_days(user, 7);
    let refused = world.alice.run(&["secret", "checkin", "rot-pw"]);
    assert_eq!(refused.status, 1, "{} {}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("failed (change)") && refused.stderr.contains("keeps version 2"),
        "{}",
        refused.stderr
    );
    assert!(is_password_of(user, &second));
    let alarms = world.bob.run(&["audit", "alarms"]).ok().stdout;
    assert!(alarms.contains("secret_rotation_failed") && alarms.contains("rot-pw"), "{alarms}");
    let who = world.alice.run(&["ssh", "rot-host", "--", "whoami"]).ok();
    assert_eq!(who.stdout.trim(), user, "the brokered login still works with the kept password");

    // An admin rotates it now (nobody sees the new one); alice cannot.
    set_min_days(user, 0);
    world.alice.run(&["secret", "rotate", "rot-pw"]).fails_with("admin");
    let rotated = world.admin.run(&["secret", "rotate", "rot-pw", "--reason", "after the incident"]).ok().stdout;
    assert!(rotated.contains("now at version 3"), "{rotated}");
    assert!(!is_password_of(user, &second));
    let listed = world.bob.run(&["secret", "rotations", "rot-pw"]).ok().stdout;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("FAILED at change") && listed.contains("rotated to version 3"), "{listed}");
    world.alice.run(&["ssh", "rot-host", "--", "true"]).ok();

    // Each password appears where it was revealed and nowhere else.
    let everything = String::from_utf8_lossy(&world.transcript.bytes()).into_owned();
    for (password, reveals) in [(&first, 1), (&second, 1)] {
        assert_eq!(everything.matches(password.as_str()).count(), reveals, "a password outside its reveal");
        assert_nowhere(&world, password, "");
    }
}
