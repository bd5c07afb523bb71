//! Tamper-evident audit logs: every writer (a gateway, the control server itself) appends its
//! records to its own RFC 6962 Merkle log and signs checkpoints of it; the control server
//! countersigns what it verified; anyone with the public keys can check a record's inclusion
//! offline.
//!
//! * [`leaf_of`]: a record's leaf commits to the writer, its sequence number, its kind, its
//!   session and the SHA-256 of its plaintext (so the server may re-encrypt it at rest).
//! * [`Frontier`]: the few subtree hashes a writer keeps to append and compute roots.
//! * [`MemoryTree`]: a whole tree in memory, for inclusion and consistency proofs.
//! * [`sign_checkpoint`] / [`countersign`] / [`verify_checkpoint`]: C2SP checkpoints in signed
//!   notes, Ed25519.
//! * [`bundle`]: the offline export of one session and its verifier.
//!
//! Tree math, proofs and note formats are `tlog_tiles` and `signed_note` (Cloudflare's port of
//! Go's `sumdb/tlog` and `note`): this crate only decides what goes in a leaf and which keys must
//! sign. Contract: pure — no files, SQL, network or clock.

pub mod bundle;

use portcullis_crypto::identity::{SigningIdentity, verify_signature};
use serde::Deserialize;
use tlog_tiles::tlog::{self, HashReader};

pub use tlog_tiles::tlog::Hash;

/// Sizes and indexes above this are refused as input (no honest log gets near it), which keeps
/// the tree math of hostile checkpoints and proofs far from overflow.
pub const MAX_LOG_SIZE: u64 = 1 << 48;

/// Records per data key: a writer's records are sealed under one key per epoch of this many
/// sequence numbers, so no key sees more than 2^28 random 96-bit nonces (AES-GCM's bound is
/// 2^32; this keeps the chance of a repeat below 2^-40).
pub const RECORDS_PER_KEY: u64 = 1 << 28;

/// The data-key epoch of record `seq` (1-based).
pub fn key_epoch(seq: u64) -> u64 {
    seq.saturating_sub(1) / RECORDS_PER_KEY
}

/// Key name of the control server's countersignature.
pub const SERVER_KEY_NAME: &str = "portcullis.server";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    #[error("record is not a JSON object with a kind: {0}")]
    MalformedRecord(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("checkpoint is for log {found}, expected {expected}")]
    WrongLog { expected: String, found: String },
    #[error("checkpoint is not signed by the writer's key")]
    NotSignedByWriter,
    #[error("checkpoint is not countersigned by the server's key")]
    NotCountersigned,
    #[error("a signature on the checkpoint does not verify ({0})")]
    BadSignature(String),
    #[error("proof does not verify: {0}")]
    BadProof(String),
    #[error("{0}")]
    Tree(String),
}

fn tree_err(e: tlog::Error) -> TlogError {
    TlogError::Tree(e.to_string())
}

/// What a leaf needs from a record's JSON: its kind and, for session records, the session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordHead {
    pub kind: String,
    #[serde(default)]
    pub session_id: Option<String>,
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_be_bytes());
    out.extend_from_slice(part);
}

/// The leaf of record `seq` of `writer`: RFC 6962 leaf hash (0x00-prefixed) of a
/// length-prefixed encoding of writer, sequence, kind, session and the plaintext's SHA-256.
pub fn leaf_hash(writer: &str, seq: u64, kind: &str, session: Option<&str>, payload_sha256: &[u8; 32]) -> Hash {
    let mut data = Vec::with_capacity(160);
    put(&mut data, b"portcullis/leaf/v1");
    put(&mut data, writer.as_bytes());
    put(&mut data, &seq.to_be_bytes());
    put(&mut data, kind.as_bytes());
    match session {
        Some(s) => {
            put(&mut data, b"\x01");
            put(&mut data, s.as_bytes());
        }
        None => put(&mut data, b"\x00"),
    }
    put(&mut data, payload_sha256);
    tlog::record_hash(&data)
}

/// Parses the kind and session of a record's plaintext (JSON).
pub fn record_head(payload: &[u8]) -> Result<RecordHead, TlogError> {
    serde_json::from_slice(payload).map_err(|e| TlogError::MalformedRecord(e.to_string()))
}

/// A record's leaf, from its plaintext.
pub fn leaf_of(writer: &str, seq: u64, payload: &[u8]) -> Result<(Hash, RecordHead), TlogError> {
    leaf_with_digest(writer, seq, payload).map(|(leaf, head, _)| (leaf, head))
}

/// A record's leaf, its head and the SHA-256 of its plaintext (computed once).
pub fn leaf_with_digest(writer: &str, seq: u64, payload: &[u8]) -> Result<(Hash, RecordHead, [u8; 32]), TlogError> {
    let head = record_head(payload)?;
    let sha = portcullis_crypto::sha256(payload);
    Ok((leaf_hash(writer, seq, &head.kind, head.session_id.as_deref(), &sha), head, sha))
}

/// The right edge of a log: the hashes of the perfect subtrees that make up its first `size`
/// leaves (at most one per bit of `size`). Enough to append and to compute the root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

struct Indexed<'a> {
    indexes: Vec<u64>,
    hashes: &'a [Hash],
}

impl HashReader for Indexed<'_> {
    fn read_hashes(&self, want: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        want.iter()
            .map(|i| {
                self.indexes.iter().position(|x| x == i).map(|p| self.hashes[p]).ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn reader(&self) -> Indexed<'_> {
        Indexed { indexes: tlog::sub_tree_index(0, self.size, Vec::new()), hashes: &self.hashes }
    }

    /// The RFC 6962 root of the first `size` leaves.
    pub fn root(&self) -> Hash {
        // The reader holds exactly the hashes `tree_hash` asks for.
        tlog::tree_hash(self.size, &self.reader()).unwrap_or(tlog::EMPTY_HASH)
    }

    pub fn append(&mut self, leaf: Hash) -> Result<(), TlogError> {
        if self.size >= MAX_LOG_SIZE {
            return Err(TlogError::Tree("the log is full".into()));
        }
        let reader = self.reader();
        let new = tlog::stored_hashes_for_record_hash(self.size, leaf, &reader).map_err(tree_err)?;
        let first = tlog::stored_hash_index(0, self.size);
        let mut indexes = reader.indexes;
        let mut hashes = self.hashes.clone();
        for (k, h) in new.into_iter().enumerate() {
            indexes.push(first + k as u64);
            hashes.push(h);
        }
        let next = Indexed { indexes, hashes: &hashes };
        let keep = tlog::sub_tree_index(0, self.size + 1, Vec::new());
        self.hashes = next.read_hashes(&keep).map_err(tree_err)?;
        self.size += 1;
        Ok(())
    }

    /// `size` is kept beside the bytes (it says how many hashes there are).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.0).collect()
    }

    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Self, TlogError> {
        if size > MAX_LOG_SIZE || bytes.len() != size.count_ones() as usize * 32 {
            return Err(TlogError::Tree(format!("a frontier of a log of {size} records does not have that shape")));
        }
        let hashes = bytes.chunks_exact(32).map(|c| Hash(c.try_into().unwrap_or([0; 32]))).collect();
        Ok(Self { size, hashes })
    }
}

/// A whole log in memory (every stored hash), for proofs. About 64 bytes per record.
pub struct MemoryTree {
    size: u64,
    stored: Vec<Hash>,
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes.iter().map(|&i| self.stored.get(i as usize).copied().ok_or(tlog::Error::IndexesNotInTree)).collect()
    }
}

impl MemoryTree {
    pub fn new() -> Self {
        Self { size: 0, stored: Vec::new() }
    }

    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Result<Self, TlogError> {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(leaf)?;
        }
        Ok(tree)
    }

    pub fn push(&mut self, leaf: Hash) -> Result<(), TlogError> {
        let new = tlog::stored_hashes_for_record_hash(self.size, leaf, self).map_err(tree_err)?;
        self.stored.extend(new);
        self.size += 1;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root_at(&self, size: u64) -> Result<Hash, TlogError> {
        if size > self.size {
            return Err(TlogError::Tree(format!("the tree has {} records, not {size}", self.size)));
        }
        tlog::tree_hash(size, self).map_err(tree_err)
    }

    /// Proof that record `index` (0-based) is in the tree of the first `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TlogError> {
        if index >= size || size > self.size {
            return Err(TlogError::Tree(format!("no record {index} in a tree of {size}")));
        }
        tlog::prove_record(size, index, self).map_err(tree_err)
    }

    /// Proof that the tree of the first `old` records is a prefix of the first `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TlogError> {
        if old == 0 || old > new || new > self.size {
            return Err(TlogError::Tree(format!("no consistency proof from {old} to {new}")));
        }
        tlog::prove_tree(new, old, self).map_err(tree_err)
    }
}

impl Default for MemoryTree {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that `leaf` is record `index` (0-based) of the tree of `size` records with `root`.
pub fn check_inclusion(proof: &[Hash], index: u64, leaf: Hash, size: u64, root: Hash) -> Result<(), TlogError> {
    if index >= size || size > MAX_LOG_SIZE || proof.len() > 64 {
        return Err(TlogError::BadProof(format!("record {index} cannot be in a tree of {size}")));
    }
    tlog::check_record(&proof.to_vec(), size, root, index, leaf).map_err(|e| TlogError::BadProof(e.to_string()))
}

/// Checks that the tree (`old`, `old_root`) is a prefix of (`new`, `new_root`).
pub fn check_consistency(proof: &[Hash], old: u64, old_root: Hash, new: u64, new_root: Hash) -> Result<(), TlogError> {
    if old == 0 || old > new || new > MAX_LOG_SIZE || proof.len() > 128 {
        return Err(TlogError::BadProof(format!("no consistency from {old} to {new}")));
    }
    tlog::check_tree(&proof.to_vec(), new, new_root, old, old_root).map_err(|e| TlogError::BadProof(e.to_string()))
}

/// The writer id of a control server's own log: named after its signing key, so two
/// installations never share one.
pub fn server_log_id(server_key: &[u8; 32]) -> String {
    format!("server-{}", &portcullis_crypto::sha256_hex(server_key)[..16])
}

/// The checkpoint origin (and writer key name) of a writer's log.
pub fn origin(writer_id: &str) -> String {
    format!("portcullis.audit/{writer_id}")
}

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: Hash,
    /// Whether the server's countersignature was present and valid.
    pub countersigned: bool,
}

const ALG_ED25519: u8 = 1;

fn note_key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut key = vec![ALG_ED25519];
    key.extend_from_slice(public);
    signed_note::key_id(name, &key)
}

struct NoteSigner<'a> {
    name: String,
    identity: &'a SigningIdentity,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        note_key_id(&self.name, &self.identity.public_key())
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.identity.sign(msg).to_vec())
    }
}

struct NoteVerifier {
    name: String,
    public: [u8; 32],
}

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        note_key_id(&self.name, &self.public)
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify_signature(&self.public, msg, sig).is_ok()
    }
}

/// A checkpoint of `writer_id`'s log at (`size`, `root`), signed by the writer.
pub fn sign_checkpoint(writer_id: &str, size: u64, root: Hash, writer: &SigningIdentity) -> Result<String, TlogError> {
    let origin = origin(writer_id);
    let body = tlog_tiles::Checkpoint::new(&origin, size, root, "")
        .map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    let mut note =
        signed_note::Note::new(&body.to_bytes(), &[]).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    let signer = NoteSigner { name: origin, identity: writer };
    note.add_sigs(&[&signer]).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    note_text(&note)
}

fn note_text(note: &signed_note::Note) -> Result<String, TlogError> {
    String::from_utf8(note.to_bytes()).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))
}

/// Adds the server's countersignature to a checkpoint note (the caller verified it first).
pub fn countersign(note: &str, server: &SigningIdentity) -> Result<String, TlogError> {
    let mut parsed =
        signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    let signer = NoteSigner { name: SERVER_KEY_NAME.into(), identity: server };
    parsed.add_sigs(&[&signer]).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    note_text(&parsed)
}

/// Verifies a checkpoint note of `writer_id`'s log: it must carry a valid signature by the
/// writer's key; a countersignature by `server` (when given) is checked and reported.
pub fn verify_checkpoint(
    note: &str,
    writer_id: &str,
    writer_key: &[u8; 32],
    server_key: Option<&[u8; 32]>,
) -> Result<Checkpoint, TlogError> {
    let origin = origin(writer_id);
    let parsed =
        signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    let mut known: Vec<Box<dyn signed_note::Verifier>> =
        vec![Box::new(NoteVerifier { name: origin.clone(), public: *writer_key })];
    if let Some(server) = server_key {
        known.push(Box::new(NoteVerifier { name: SERVER_KEY_NAME.into(), public: *server }));
    }
    let (verified, _unknown) = parsed.verify(&signed_note::VerifierList::new(known)).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => TlogError::NotSignedByWriter,
        other => TlogError::BadSignature(other.to_string()),
    })?;
    if !verified.iter().any(|s| s.name() == origin) {
        return Err(TlogError::NotSignedByWriter);
    }
    let countersigned = verified.iter().any(|s| s.name() == SERVER_KEY_NAME);
    let body =
        tlog_tiles::Checkpoint::from_bytes(parsed.text()).map_err(|e| TlogError::MalformedCheckpoint(e.to_string()))?;
    if body.origin() != origin {
        return Err(TlogError::WrongLog { expected: origin, found: body.origin().to_string() });
    }
    if body.size() > MAX_LOG_SIZE || !body.extension().is_empty() {
        return Err(TlogError::MalformedCheckpoint("size or extension out of range".into()));
    }
    Ok(Checkpoint { size: body.size(), root: *body.hash(), countersigned })
}

/// Base64 of a hash (the form checkpoints and bundles use).
pub fn hash_b64(h: &Hash) -> String {
    h.to_string()
}

pub fn parse_hash_b64(s: &str) -> Result<Hash, TlogError> {
    Hash::parse_hash(s).map_err(|e| TlogError::BadProof(format!("malformed hash {s:?}: {e}")))
}

#[cfg(test)]
mod tests;
