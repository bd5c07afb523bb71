//! The masker's throughput against copying the same bytes, in one run: 1 GiB of log-like
//! text (a secret's forms sprinkled in), written in 64 KiB pieces as a child writes to a pipe,
//! masked with the patterns of three secrets (a token, a multi-line key, a short password).
//! Medians of five rounds each.
//! `cargo run --release -p portcullis-vault --example mask_bench [MiB]`

use std::time::Instant;

use base64::Engine;
use portcullis_vault::mask::MaskSet;

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let token = b"ghp_7bQv9xZ2Lk4mN8pR1sT5uW0yA3cE6fH9jK2";
    let key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDh3x9aZ2pQmVt4kL8sY7cR0bW1nE5fT6gH3jK9lM2oPA==\n-----END OPENSSH PRIVATE KEY-----\n";
    let masks = MaskSet::new([("TOKEN", token.as_slice()), ("KEY", key.as_slice()), ("PIN", b"hunter2".as_slice())]);
    // One 64 KiB piece of logs, a token and its base64 in it now and then.
    let mut piece = Vec::with_capacity(64 * 1024);
    let mut n = 0u64;
    while piece.len() < 64 * 1024 - 200 {
        n += 1;
        let line = match n % 97 {
            0 => format!("auth with {}\n", String::from_utf8_lossy(token)),
            50 => format!("header {}\n", base64::engine::general_purpose::STANDARD.encode(token)),
            _ => format!(
                "2026-12-02T10:00:{:02}Z INFO request id={n} status=200 took={}ms path=/api/v1/items\n",
                n % 60,
                n % 97
            ),
        };
        piece.extend_from_slice(line.as_bytes());
    }
    let pieces = mib * 1024 * 1024 / piece.len();
    let bytes = (pieces * piece.len()) as f64;
    let mut out = Vec::with_capacity(2 * piece.len());
    let mut copy_rounds = Vec::new();
    let mut mask_rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut total = 0usize;
        for _ in 0..pieces {
            out.clear();
            out.extend_from_slice(std::hint::black_box(&piece));
            total += std::hint::black_box(&out).len();
        }
        assert!(total > 0);
        copy_rounds.push(bytes / started.elapsed().as_secs_f64() / 1e9);

        let started = Instant::now();
        let mut masker = masks.masker();
        let mut total = 0usize;
        for _ in 0..pieces {
            out.clear();
            masker.push(std::hint::black_box(&piece), &mut out);
            total += std::hint::black_box(&out).len();
        }
        out.clear();
        masker.finish(&mut out);
        assert!(total > 0);
        mask_rounds.push(bytes / started.elapsed().as_secs_f64() / 1e9);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (copy, mask) = (median(&mut copy_rounds), median(&mut mask_rounds));
    println!("mask {mib} MiB in 64 KiB writes: copy {copy:.2} GB/s, masker {mask:.2} GB/s ({:.2}x)", mask / copy);
}
