//! Audit figures (run with `bash tests/bench_audit.sh`, release build, medians of several
//! rounds, each beside its baseline in the same run):
//!
//! 1. Append at the gateway — encrypt, leaf, Merkle frontier, signed checkpoint, insert, one
//!    durable transaction per batch — beside a raw SQLite batched insert of the same blobs
//!    into a table of the same shape, same pragmas (WAL, synchronous FULL).
//! 2. Ingest at the server on one core (a current-thread runtime): checkpoint signature, leaf
//!    recomputation and consistency with the held tree, parse and index, seal under the
//!    writer's data key, insert, countersign — on SQLite and on PostgreSQL (a throwaway
//!    cluster on loopback, started here), rounds alternating in the same run.
//! 3. `server verify --data` over a log of `verify_records` records.
//!
//! Usage: audit_bench [records-per-round] [rounds] [verify-records]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use portcullis_crypto::identity::SigningIdentity;
use portcullis_crypto::{OsRng, SymmetricKey};
use portcullis_keystore::{FixedPassphrase, Preference};
use portcullis_localdb::LocalDb;
use portcullis_localdb::records::LogWriter;
use portcullis_proto::{AuditPayload, SessionChunk, UploadBatch, UploadRecord};
use portcullis_server::{InitOptions, Server, SystemClock};
use sqlx::Connection;

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

const BATCH: usize = 64;

fn payloads(n: usize, session: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::to_string(&AuditPayload::SessionChunk(SessionChunk {
                session_id: session.into(),
                events: vec![(i as f64 / 100.0, "o".into(), format!("{i:08} {}\r\n", "x".repeat(300)))],
            }))
            .unwrap()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Records/s of the gateway's append path.
async fn append_round(dir: &std::path::Path, records: &[String]) -> f64 {
    let db = LocalDb::open(&dir.join("gateway.db")).await.unwrap();
    let key = SymmetricKey::generate(&mut OsRng);
    let signer = SigningIdentity::generate(&mut OsRng);
    let w = LogWriter { writer_id: "bench-gateway", key: &key, signer: &signer };
    let start = Instant::now();
    for chunk in records.chunks(BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        db.append_records(&w, &refs, 0.0).await.unwrap();
    }
    records.len() as f64 / start.elapsed().as_secs_f64()
}

/// Records/s of a plain batched insert of the same blobs (already serialized, no crypto).
async fn raw_round(dir: &std::path::Path, records: &[String]) -> f64 {
    let url = format!("sqlite://{}?mode=rwc", dir.join("raw.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         CREATE TABLE records (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_at REAL NOT NULL, \
         payload BLOB NOT NULL, uploaded_at REAL, leaf BLOB)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let start = Instant::now();
    let mut seq = 0i64;
    for chunk in records.chunks(BATCH) {
        let mut tx = conn.begin().await.unwrap();
        for r in chunk {
            seq += 1;
            sqlx::query("INSERT INTO records (seq, kind, created_at, payload) VALUES (?, ?, ?, ?)")
                .bind(seq)
                .bind("session_chunk")
                .bind(0.0)
                .bind(r.as_bytes())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    records.len() as f64 / start.elapsed().as_secs_f64()
}

/// A server with its embedded gateway's identity (the writer the uploads come from); its store
/// in `database` (PostgreSQL), or SQLite in `dir`.
async fn server(dir: &std::path::Path, database: Option<String>) -> (Server, String, SigningIdentity) {
    let pass = FixedPassphrase("bench".into());
    let options = InitOptions {
        key_store: Preference::Passphrase,
        admin_name: "admin".into(),
        extra_admin_roles: vec![],
        tls_names: vec![],
        standalone: false,
        database,
    };
    portcullis_server::init(dir, options, &pass, Arc::new(SystemClock)).await.unwrap();
    let server = Server::open(dir, &pass, Arc::new(SystemClock)).await.unwrap();
    let embedded = server.embedded_gateway().await.unwrap();
    (server, embedded.id, embedded.signing)
}

/// Uploads `records` (continuing at `first`) in batches of 1,000 with the writer's checkpoint;
/// records/s.
async fn ingest(
    server: &Server,
    writer: &str,
    key: &SigningIdentity,
    tree: &mut portcullis_tlog::Frontier,
    first: u64,
    records: &[String],
) -> f64 {
    // The writer's side (leaves and checkpoints) is prepared before the clock starts.
    let mut batches = Vec::new();
    let mut seq = first;
    for chunk in records.chunks(1000) {
        let mut upload = Vec::new();
        for payload in chunk {
            let (leaf, _) = portcullis_tlog::leaf_of(writer, seq, payload.as_bytes()).unwrap();
            tree.append(leaf).unwrap();
            upload.push(UploadRecord { seq, payload: Some(payload.clone()), lost_leaf: None, lost_reason: None });
            seq += 1;
        }
        let checkpoint = portcullis_tlog::sign_checkpoint(writer, tree.size(), tree.root(), key).unwrap();
        batches.push(UploadBatch { records: upload, checkpoint, acknowledged: None, server_witnessed: None });
    }
    let start = Instant::now();
    for batch in &batches {
        let ack = server.ingest_records(writer, batch).await.unwrap();
        assert_eq!(ack.stored_through, batch.records.last().unwrap().seq);
    }
    records.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let per_round = args.first().copied().unwrap_or(20_000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let verify_records = args.get(2).copied().unwrap_or(1_000_000);
    let records = payloads(per_round, "5e551011-0000-4000-8000-000000000001");
    let bytes: usize = records.iter().map(String::len).sum();
    println!("records of {} bytes on average, batches of {BATCH}", bytes / records.len());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut appends, mut raws) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            raws.push(raw_round(dir.path(), &records).await);
            appends.push(append_round(dir.path(), &records).await);
        }
        let (a, r) = (median(appends), median(raws));
        println!("append (gateway log): {a:.0} records/s; raw SQLite insert of the same blobs: {r:.0} records/s; ratio {:.2}", a / r);

        // Ingest on one core (current-thread runtime), SQLite and PostgreSQL rounds alternating.
        let pg_dir = tempfile::tempdir().unwrap();
        let (pg, pg_writer, pg_key) =
            server(pg_dir.path(), Some(postgres::Cluster::shared().fresh_database())).await;
        let mut pg_tree = portcullis_tlog::Frontier::new();
        let mut pg_rates = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        let (server, writer, key) = server(dir.path(), None).await;
        let mut tree = portcullis_tlog::Frontier::new();
        let mut rates = Vec::new();
        let mut next = 1;
        for _ in 0..rounds {
            rates.push(ingest(&server, &writer, &key, &mut tree, next, &records).await);
            pg_rates.push(ingest(&pg, &pg_writer, &pg_key, &mut pg_tree, next, &records).await);
            next += records.len() as u64;
        }
        let (sqlite_rate, pg_rate) = (median(rates), median(pg_rates));
        println!("ingest (server, one core, full verification): SQLite {sqlite_rate:.0} records/s");
        println!(
            "ingest on PostgreSQL (loopback, same run): {pg_rate:.0} records/s; ratio to SQLite {:.2}",
            pg_rate / sqlite_rate
        );
        drop(pg);
        // Fill up to `verify_records`, then verify the whole data directory offline.
        while (next as usize) <= verify_records {
            let n = (verify_records + 1 - next as usize).min(records.len());
            ingest(&server, &writer, &key, &mut tree, next, &records[..n]).await;
            next += n as u64;
        }
        let start = Instant::now();
        let report = Server::verify_data(dir.path(), None, &FixedPassphrase("bench".into())).await.unwrap();
        let took = start.elapsed().as_secs_f64();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        println!("verify (server verify --data): {} records in {took:.1} s ({:.0} records/s)", report.records, report.records as f64 / took);
    });
}
