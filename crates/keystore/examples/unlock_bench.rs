//! Benchmark (not a test): how long unlocking a key takes at the chosen Argon2id parameters,
//! beside an OS-keyring unlock when a Secret Service is reachable. Prints medians.
//! Run: cargo run --release -p portcullis-keystore --example unlock_bench

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use portcullis_crypto::{OsRng, SymmetricKey};
use portcullis_keystore::{FixedPassphrase, Preference, StoreKind, create, kdf_params, unlock};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_unlocks(path: &std::path::Path, runs: usize) -> f64 {
    let pass = FixedPassphrase("bench passphrase".into());
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                unlock(path, "bench", &pass).expect("unlock");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SymmetricKey::generate(&mut OsRng);
    let pass = FixedPassphrase("bench passphrase".into());
    let runs = 9;

    let wrapped = dir.path().join("passphrase.json");
    create(&wrapped, "bench", Preference::Passphrase, &key, &pass, &mut OsRng).expect("wrap");
    let argon_ms = time_unlocks(&wrapped, runs);
    let p = kdf_params();
    println!("argon2id unlock (m={} KiB, t={}, p={}): median {argon_ms:.1} ms over {runs} runs", p.m_kib, p.t, p.p);

    let in_keyring = dir.path().join("keyring.json");
    match create(&in_keyring, "bench", Preference::Keyring, &key, &pass, &mut OsRng) {
        Ok(StoreKind::Keyring) => {
            let keyring_ms = time_unlocks(&in_keyring, runs);
            println!(
                "os keyring unlock: median {keyring_ms:.1} ms over {runs} runs; argon2id/keyring = {:.1}x",
                argon_ms / keyring_ms
            );
        }
        _ => {
            println!("os keyring unlock: no Secret Service reachable (run inside dbus-run-session with gnome-keyring)")
        }
    }
}
