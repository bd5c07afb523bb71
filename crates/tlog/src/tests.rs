use base64::Engine;
use portcullis_crypto::OsRng;
use portcullis_crypto::identity::SigningIdentity;

use super::bundle::{Bundle, BundleRecord, BundleWriter, FORMAT, verify_bundle};
use super::*;

/// RFC 6962 §2.1 written out directly, as an independent reference.
fn naive_root(leaves: &[Hash]) -> Hash {
    use portcullis_crypto::sha256;
    match leaves.len() {
        0 => Hash(sha256(b"")),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let (l, r) = (naive_root(&leaves[..k]), naive_root(&leaves[k..]));
            let mut data = vec![1u8];
            data.extend_from_slice(&l.0);
            data.extend_from_slice(&r.0);
            Hash(sha256(&data))
        }
    }
}

fn leaves(n: u64) -> Vec<Hash> {
    (1..=n).map(|i| leaf_hash("w", i, "session_chunk", Some("s"), &[i as u8; 32])).collect()
}

#[test]
fn frontier_and_memory_tree_agree_with_rfc6962() {
    let all = leaves(130);
    let mut frontier = Frontier::new();
    let mut tree = MemoryTree::new();
    assert_eq!(frontier.root(), naive_root(&[]));
    for (i, leaf) in all.iter().enumerate() {
        frontier.append(*leaf).unwrap();
        tree.push(*leaf).unwrap();
        let expected = naive_root(&all[..=i]);
        assert_eq!(frontier.root(), expected, "size {}", i + 1);
        assert_eq!(tree.root_at(i as u64 + 1).unwrap(), expected);
        assert_eq!(frontier.to_bytes().len(), (i + 1).count_ones() as usize * 32);
        let back = Frontier::from_bytes(frontier.size(), &frontier.to_bytes()).unwrap();
        assert_eq!(back, frontier);
    }
    // A frontier whose bytes do not fit its size is refused.
    assert!(Frontier::from_bytes(3, &[0; 32]).is_err());
    assert!(Frontier::from_bytes(MAX_LOG_SIZE + 1, &[]).is_err());
}

#[test]
fn every_field_of_a_leaf_counts() {
    let base = leaf_hash("w", 1, "k", Some("s"), &[0; 32]);
    for other in [
        leaf_hash("x", 1, "k", Some("s"), &[0; 32]),
        leaf_hash("w", 2, "k", Some("s"), &[0; 32]),
        leaf_hash("w", 1, "j", Some("s"), &[0; 32]),
        leaf_hash("w", 1, "k", Some("t"), &[0; 32]),
        leaf_hash("w", 1, "k", None, &[0; 32]),
        leaf_hash("w", 1, "k", Some(""), &[0; 32]),
        leaf_hash("w", 1, "k", Some("s"), &[1; 32]),
        // Length prefixes: moving a byte between fields is a different leaf.
        leaf_hash("wk", 1, "", Some("s"), &[0; 32]),
    ] {
        assert_ne!(base, other);
    }
    let (leaf, head) = leaf_of("w", 3, br#"{"kind":"session_end","session_id":"s","x":1}"#).unwrap();
    assert_eq!(head, RecordHead { kind: "session_end".into(), session_id: Some("s".into()) });
    assert_eq!(
        leaf,
        leaf_hash(
            "w",
            3,
            "session_end",
            Some("s"),
            &portcullis_crypto::sha256(br#"{"kind":"session_end","session_id":"s","x":1}"#)
        )
    );
    for bad in [&b"[]"[..], b"{}", b"not json", br#"{"kind":3}"#] {
        assert!(leaf_of("w", 1, bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn inclusion_and_consistency_proofs() {
    let all = leaves(37);
    let tree = MemoryTree::from_leaves(all.clone()).unwrap();
    for size in [1u64, 2, 5, 16, 17, 37] {
        let root = tree.root_at(size).unwrap();
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            check_inclusion(&proof, index, all[index as usize], size, root).unwrap();
            // Another leaf, another place, another root: refused.
            let other = all[((index + 1) % 37) as usize];
            assert!(check_inclusion(&proof, index, other, size, root).is_err());
            if size > 1 {
                assert!(check_inclusion(&proof, (index + 1) % size, all[index as usize], size, root).is_err());
            }
            assert!(check_inclusion(&proof, index, all[index as usize], size, Hash([7; 32])).is_err());
        }
        for old in 1..=size {
            let proof = tree.consistency_proof(old, size).unwrap();
            check_consistency(&proof, old, tree.root_at(old).unwrap(), size, root).unwrap();
        }
    }
    // A fork: the same size with one record changed is not consistent with the original.
    let mut forked = all.clone();
    forked[3] = Hash([9; 32]);
    let fork = MemoryTree::from_leaves(forked).unwrap();
    let proof = tree.consistency_proof(10, 37).unwrap();
    assert!(check_consistency(&proof, 10, fork.root_at(10).unwrap(), 37, tree.root_at(37).unwrap()).is_err());
    // Hostile input is refused, not a panic.
    assert!(check_inclusion(&[], 5, all[0], 3, Hash([0; 32])).is_err());
    assert!(check_inclusion(&[], 0, all[0], u64::MAX, Hash([0; 32])).is_err());
    assert!(check_consistency(&[], 0, Hash([0; 32]), 3, Hash([0; 32])).is_err());
    assert!(check_consistency(&vec![Hash([0; 32]); 500], 1, Hash([0; 32]), 3, Hash([0; 32])).is_err());
    assert!(tree.inclusion_proof(40, 41).is_err());
}

#[test]
fn checkpoints_need_the_writers_signature_and_report_the_countersignature() {
    let writer = SigningIdentity::generate(&mut OsRng);
    let server = SigningIdentity::generate(&mut OsRng);
    let stranger = SigningIdentity::generate(&mut OsRng);
    let root = naive_root(&leaves(5));
    let note = sign_checkpoint("gw-1", 5, root, &writer).unwrap();
    let cp = verify_checkpoint(&note, "gw-1", &writer.public_key(), Some(&server.public_key())).unwrap();
    assert_eq!(cp, Checkpoint { size: 5, root, countersigned: false });
    let cosigned = countersign(&note, &server).unwrap();
    let cp = verify_checkpoint(&cosigned, "gw-1", &writer.public_key(), Some(&server.public_key())).unwrap();
    assert!(cp.countersigned);
    // Signed by another key (as the writer, or as the server): not accepted as theirs.
    let forged = sign_checkpoint("gw-1", 5, root, &stranger).unwrap();
    assert_eq!(
        verify_checkpoint(&forged, "gw-1", &writer.public_key(), None).unwrap_err(),
        TlogError::NotSignedByWriter
    );
    let by_stranger = countersign(&note, &stranger).unwrap();
    let cp = verify_checkpoint(&by_stranger, "gw-1", &writer.public_key(), Some(&server.public_key())).unwrap();
    assert!(!cp.countersigned);
    // Another writer's log, or an edited size: refused.
    assert!(verify_checkpoint(&note, "gw-2", &writer.public_key(), None).is_err());
    let edited = note.replacen("\n5\n", "\n4\n", 1);
    assert!(matches!(verify_checkpoint(&edited, "gw-1", &writer.public_key(), None), Err(TlogError::BadSignature(_))));
    assert!(verify_checkpoint("garbage", "gw-1", &writer.public_key(), None).is_err());
}

fn payload(kind: &str, session: &str, extra: &str) -> String {
    format!(r#"{{"kind":"{kind}","session_id":"{session}"{extra}}}"#)
}

/// A log with two interleaved sessions; the bundle of session `a`.
fn bundle() -> (Bundle, SigningIdentity) {
    let writer = SigningIdentity::generate(&mut OsRng);
    let server = SigningIdentity::generate(&mut OsRng);
    let payloads = [
        payload("session_start", "a", ""),
        payload("session_start", "b", ""),
        payload("session_chunk", "a", r#","events":[]"#),
        payload("session_chunk", "b", r#","events":[]"#),
        payload("file_transfer", "a", r#","path":"/etc/x""#),
        payload("session_end", "a", r#","session_records":3"#),
        payload("session_end", "b", r#","session_records":2"#),
    ];
    let mut tree = MemoryTree::new();
    for (i, p) in payloads.iter().enumerate() {
        tree.push(leaf_of("gw", i as u64 + 1, p.as_bytes()).unwrap().0).unwrap();
    }
    let size = tree.size();
    let note =
        countersign(&sign_checkpoint("gw", size, tree.root_at(size).unwrap(), &writer).unwrap(), &server).unwrap();
    let records = [1u64, 3, 5, 6]
        .iter()
        .map(|&seq| BundleRecord {
            seq,
            payload: payloads[seq as usize - 1].clone(),
            proof: tree.inclusion_proof(seq - 1, size).unwrap().iter().map(hash_b64).collect(),
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Bundle {
        format: FORMAT.into(),
        session_id: "a".into(),
        writer: BundleWriter { id: "gw".into(), name: "dc1".into(), public_key: b64.encode(writer.public_key()) },
        server_key: b64.encode(server.public_key()),
        checkpoint: note,
        records,
    };
    (bundle, server)
}

fn verify(b: &Bundle) -> Result<bundle::BundleReport, TlogError> {
    verify_bundle(&serde_json::to_vec(b).unwrap(), None)
}

#[test]
fn a_bundle_verifies_offline_and_every_alteration_is_caught() {
    let (good, server) = bundle();
    let report = verify(&good).unwrap();
    assert_eq!((report.records, report.log_size, report.incomplete.clone()), (4, 7, None));
    let b64 = base64::engine::general_purpose::STANDARD;
    verify_bundle(&serde_json::to_vec(&good).unwrap(), Some(&b64.encode(server.public_key()))).unwrap();

    type Edit = fn(&mut Bundle);
    let refused: Vec<(&str, Edit)> = vec![
        ("a flipped byte in a record", |b| b.records[1].payload = b.records[1].payload.replace("events", "eventz")),
        ("a record swapped with another", |b| b.records.swap(1, 2)),
        ("a record moved to another place", |b| b.records[1].seq = 4),
        ("a record of another session", |b| {
            b.records[1].payload = payload("session_chunk", "b", r#","events":[]"#);
        }),
        ("a proof hash changed", |b| b.records[2].proof[0] = hash_b64(&Hash([1; 32]))),
        ("the checkpoint's size edited", |b| b.checkpoint = b.checkpoint.replacen("\n7\n", "\n8\n", 1)),
        ("no countersignature", |b| {
            let cut: Vec<&str> = b.checkpoint.lines().filter(|l| !l.contains(SERVER_KEY_NAME)).collect();
            b.checkpoint = cut.join("\n") + "\n";
        }),
        ("another writer key", |b| {
            b.writer.public_key =
                base64::engine::general_purpose::STANDARD.encode(SigningIdentity::generate(&mut OsRng).public_key());
        }),
        ("another server key", |b| {
            b.server_key =
                base64::engine::general_purpose::STANDARD.encode(SigningIdentity::generate(&mut OsRng).public_key());
        }),
        ("another writer id", |b| b.writer.id = "gw2".into()),
        ("unknown format", |b| b.format = "portcullis-audit-bundle/9".into()),
    ];
    for (what, edit) in refused {
        let mut b = good.clone();
        edit(&mut b);
        assert!(verify(&b).is_err(), "{what} was accepted");
    }
    // One flipped byte anywhere in the serialized bundle: refused or (in a name only) visible.
    let bytes = serde_json::to_vec(&good).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.windows(6).position(|w| w == b"events").unwrap();
    flipped[at] ^= 0x01;
    assert!(verify_bundle(&flipped, None).is_err());
    // A pinned server key that is not the bundle's.
    let other = b64.encode(SigningIdentity::generate(&mut OsRng).public_key());
    assert_eq!(verify_bundle(&bytes, Some(&other)).unwrap_err(), TlogError::NotCountersigned);

    // Records left out: each still proven, but the session is reported incomplete.
    let mut cut = good.clone();
    cut.records.remove(2);
    assert!(verify(&cut).unwrap().incomplete.unwrap().contains("counts 3 records"));
    let mut tail = good.clone();
    tail.records.pop();
    assert!(verify(&tail).unwrap().incomplete.unwrap().contains("no end record"));
    let mut head = good.clone();
    head.records.remove(0);
    assert!(verify(&head).unwrap().incomplete.unwrap().contains("start record is missing"));
}
