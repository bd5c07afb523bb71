//! The installable packages: `tests/package.sh --debug` packages the binaries this suite built
//! (a release build of everything would double the suite's time; `bash tests/package.sh` makes
//! the release packages the same way) and fails on any lintian error. Both `.deb`s are unpacked
//! into a throwaway root, and the `portcullis` in it answers `--version` and creates a server.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_packages_pass_lintian_install_into_a_fresh_root_and_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let version = env!("CARGO_PKG_VERSION");
    let built = run(Command::new("bash").arg(repo.join("tests/package.sh")).arg("--debug"));
    let packages = repo.join("target/packages");
    let cli = packages.join(format!("portcullis_{version}_amd64.deb"));
    let desktop = packages.join(format!("portcullis-desktop_{version}_amd64.deb"));
    for deb in [&cli, &desktop] {
        let name = deb.file_name().unwrap().to_str().unwrap();
        assert!(built.lines().any(|l| l.starts_with(name)), "package.sh did not report {name}:\n{built}");
    }

    // What dpkg will install: the binary, the systemd unit, the docs Debian asks for, and the
    // dependencies dpkg-shlibdeps found.
    let control = run(Command::new("dpkg-deb").arg("--field").arg(&cli));
    assert!(
        control.contains("Package: portcullis\n") && control.contains(&format!("Version: {version}\n")),
        "{control}"
    );
    let depends = control.lines().find(|l| l.starts_with("Depends:")).unwrap_or_default();
    assert!(depends.contains("libc6") && depends.contains("adduser"), "{control}");
    let files = run(Command::new("dpkg-deb").arg("--contents").arg(&cli));
    for path in [
        "usr/bin/portcullis\n",
        "lib/systemd/system/portcullis-server.service\n",
        "usr/share/doc/portcullis/copyright\n",
        "usr/share/doc/portcullis/changelog.gz\n",
    ] {
        assert!(files.contains(path), "{path} missing from the package:\n{files}");
    }
    let desktop_files = run(Command::new("dpkg-deb").arg("--contents").arg(&desktop));
    assert!(desktop_files.contains("usr/bin/portcullis-desktop\n"), "{desktop_files}");
    assert!(desktop_files.contains("usr/share/applications/portcullis-desktop.desktop\n"), "{desktop_files}");
    assert!(desktop_files.contains("usr/share/doc/portcullis-desktop/copyright\n"), "{desktop_files}");
    let desktop_control = run(Command::new("dpkg-deb").arg("--field").arg(&desktop));
    assert!(desktop_control.contains("libwebkit2gtk-4.1-0"), "{desktop_control}");

    // Unpacked into a root of its own: the packaged binary runs and creates a server.
    let root = tempfile::tempdir().unwrap();
    for deb in [&cli, &desktop] {
        run(Command::new("dpkg").arg("-x").arg(deb).arg(root.path()));
    }
    let portcullis = root.path().join("usr/bin/portcullis");
    let shown = run(Command::new(&portcullis).arg("--version"));
    assert_eq!(shown.trim(), format!("portcullis {version}"));
    let data = root.path().join("var/lib/portcullis");
    let out = run(Command::new(&portcullis)
        .args(["server", "init", "--data"])
        .arg(&data)
        .env("PORTCULLIS_KEY_STORE", "passphrase")
        .env("PORTCULLIS_PASSPHRASE", PASSPHRASE)
        .env_remove("PORTCULLIS_HOME"));
    assert!(out.lines().last().unwrap_or_default().starts_with("pc1-"), "{out}");
    assert!(data.join("server.db").exists(), "server init wrote no database");
    // The unit serves what the package installed, from the directory postinst creates.
    let unit = std::fs::read_to_string(root.path().join("lib/systemd/system/portcullis-server.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/portcullis server run --data /var/lib/portcullis"), "{unit}");
    assert!(unit.contains("User=portcullis"), "{unit}");
    assert!(root.path().join("usr/bin/portcullis-desktop").exists());
}
