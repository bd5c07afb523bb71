//! Vault secrets: typed values with versions (admins write; everyone enrolled lists metadata).
//! No route here answers with a value: restore re-seals an old version on the server, so the
//! one restoring never sees it (unlike HashiCorp Vault, vault#12448).

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use portcullis_crypto::{OsRng, SecretBytes};
use portcullis_proto::{Role, Sealed, check_label, check_name};
use portcullis_vault::wire::{
    AddSecretRequest, DEFAULT_VERSIONS_KEPT, EditSecretRequest, INFO_SECRET_VALUE, ImportOutcome, ImportRequest,
    MAX_IMPORT, MAX_PAGE, MAX_VERSIONS_KEPT, RemoveSecretRequest, RestoreSecretRequest, SecretMeta, SecretPage,
    SecretQuery, SecretVersionView, SecretView, decode_fields,
};
use portcullis_vault::{Facts, SecretKind, SecretValue, VaultError};

use super::{ApiResult, AppState};
use crate::ServerError;
use crate::auth::Caller;
use crate::rows::Row;
use crate::store::{SecretFilter, SecretRow, Store};

impl From<VaultError> for ServerError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Invalid(why) => ServerError::BadRequest(why),
            VaultError::NotAuthentic => {
                tracing::error!("a stored secret value did not open under its associated data");
                ServerError::Refused("row_not_authentic", e.to_string())
            }
        }
    }
}

fn kind_of(row: &SecretRow) -> Result<SecretKind, ServerError> {
    SecretKind::parse(&row.kind).map_err(ServerError::Internal)
}

fn facts_of(text: &str) -> Facts {
    serde_json::from_str(text).unwrap_or_default()
}

/// Whether `caller` sees a secret's public facts (a host, a user, a certificate's names):
/// admins, approvers and auditors do; a requester sees what to choose by, as for targets.
fn sees_facts(caller: &Caller) -> bool {
    caller.roles.iter().any(|r| matches!(r, Role::Admin | Role::Approver | Role::Auditor))
}

/// [`view`] as `caller` may see it.
fn view_for(row: &SecretRow, caller: &Caller) -> Result<SecretView, ServerError> {
    let mut v = view(row)?;
    if !sees_facts(caller) {
        v.facts = Facts { expires_at: v.facts.expires_at, ..Facts::default() };
    }
    Ok(v)
}

fn view(row: &SecretRow) -> Result<SecretView, ServerError> {
    Ok(SecretView {
        id: row.id.clone(),
        name: row.name.clone(),
        kind: kind_of(row)?,
        environment: row.environment.clone(),
        folder: row.folder.clone(),
        tags: crate::store::csv_list(&row.tags),
        description: row.description.clone(),
        owner: row.owner.clone(),
        revealable: row.revealable != 0,
        expires_at: row.expires_at,
        version: row.current_version,
        versions_kept: row.versions_kept,
        facts: facts_of(&row.facts),
        created_at: row.created_at,
        created_by: row.created_by_name.clone(),
        updated_at: row.updated_at,
        updated_by: row.updated_by_name.clone(),
        removed_at: row.removed_at,
        target: row.target_name.clone(),
    })
}

/// Metadata after validation.
struct CheckedMeta {
    environment: String,
    folder: String,
    tags: String,
    description: String,
    owner: String,
    versions_kept: i64,
}

fn check_folder(folder: &str) -> Result<(), ServerError> {
    if folder.is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = folder.split('/').collect();
    if parts.len() > 8 {
        return Err(ServerError::BadRequest(format!("folder {folder:?} is more than 8 levels deep")));
    }
    for part in parts {
        check_label("folder", part).map_err(|e| {
            ServerError::BadRequest(format!("{e} (a folder is labels separated by '/', like payments/prod)"))
        })?;
    }
    Ok(())
}

pub(crate) fn check_reason(reason: &str) -> Result<String, ServerError> {
    let reason = reason.trim();
    if reason.len() > 500 || reason.chars().any(char::is_control) {
        return Err(ServerError::BadRequest("a reason is one line of at most 500 characters".into()));
    }
    Ok(reason.to_string())
}

async fn check_meta(state: &crate::ServerState, meta: &SecretMeta) -> Result<CheckedMeta, ServerError> {
    if !meta.environment.is_empty() {
        check_label("environment", &meta.environment).map_err(ServerError::BadRequest)?;
    }
    check_folder(&meta.folder)?;
    let mut tags = meta.tags.clone();
    tags.sort();
    tags.dedup();
    for tag in &tags {
        check_label("tag", tag).map_err(ServerError::BadRequest)?;
    }
    if tags.len() > 16 {
        return Err(ServerError::BadRequest("at most 16 tags".into()));
    }
    let description = meta.description.trim();
    if description.len() > 500 || description.chars().any(char::is_control) {
        return Err(ServerError::BadRequest("a description is one line of at most 500 characters".into()));
    }
    if !meta.owner.is_empty() && state.db.user_named(&meta.owner).await?.is_none() {
        return Err(ServerError::BadRequest(format!("no user named {:?} to own it", meta.owner)));
    }
    let versions_kept = meta.versions_kept.unwrap_or(DEFAULT_VERSIONS_KEPT);
    if !(1..=MAX_VERSIONS_KEPT).contains(&versions_kept) {
        return Err(ServerError::BadRequest(format!("versions kept must be from 1 to {MAX_VERSIONS_KEPT}")));
    }
    Ok(CheckedMeta {
        environment: meta.environment.clone(),
        folder: meta.folder.clone(),
        tags: if tags.is_empty() { String::new() } else { format!(",{},", tags.join(",")) },
        description: description.to_string(),
        owner: meta.owner.clone(),
        versions_kept,
    })
}

/// The fields of a value sealed to this server for secret `name`.
fn open_fields(
    state: &crate::ServerState,
    sealed: &Sealed,
    name: &str,
) -> Result<Vec<(String, SecretBytes)>, ServerError> {
    let plain: SecretBytes = state
        .sealing
        .open(sealed, INFO_SECRET_VALUE, name.as_bytes())
        .map_err(|_| ServerError::BadRequest("the value was not sealed to this server's key for this name".into()))?;
    Ok(decode_fields(plain.expose_secret())?)
}

/// A new value for `row`: the fields given, over the current version's (so a database
/// password changes without giving its host again).
async fn merged_value(
    state: &crate::ServerState,
    tx: &mut crate::store::Tx<'_>,
    row: &SecretRow,
    kind: SecretKind,
    sealed: &Sealed,
) -> Result<(SecretValue, Facts), ServerError> {
    let given = open_fields(state, sealed, &row.name)?;
    let envelope = Store::secret_envelope(tx, &row.id, row.current_version)
        .await?
        .ok_or_else(|| ServerError::Internal(format!("the current version of {} has no value", row.name)))?;
    let current = portcullis_vault::open(&state.root_key, &envelope, &row.id, row.current_version, kind)?;
    let mut fields: Vec<(String, SecretBytes)> = current
        .fields()
        .filter(|(name, _)| !given.iter().any(|(g, _)| g == name))
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    // A combined PEM given for a certificate's key brings its own chain.
    if kind == SecretKind::Tls
        && given.iter().any(|(g, _)| g == "private_key")
        && !given.iter().any(|(g, _)| g == "certificate")
    {
        let combined =
            given.iter().any(|(_, v)| v.expose_secret().windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"));
        if combined {
            fields.retain(|(name, _)| name != "certificate");
        }
    }
    fields.extend(given);
    Ok(SecretValue::parse(kind, fields)?)
}

fn facts_json(facts: &Facts) -> Result<String, ServerError> {
    serde_json::to_string(facts).map_err(|e| ServerError::Internal(e.to_string()))
}

/// The secret named `name` in a write transaction, checked to be the one the server wrote.
async fn secret_for_change(
    state: &crate::ServerState,
    tx: &mut crate::store::Tx<'_>,
    name: &str,
) -> Result<SecretRow, ServerError> {
    let row = Store::secret_by_name_in(tx, name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no secret named {name:?}; see `portcullis secret list`")))?;
    state.rows.check(tx, Row::Secret(&row.id)).await?;
    Ok(row)
}

/// The target a new `kind` secret may hold the password of: an SSH target that logs in with a
/// password (its gateway rotates it there).
async fn bindable_target(
    state: &crate::ServerState,
    kind: SecretKind,
    name: &str,
) -> Result<crate::store::TargetRow, ServerError> {
    if kind != SecretKind::Password {
        return Err(ServerError::BadRequest(format!(
            "only a password secret is bound to a target (this one is {})",
            kind.as_str()
        )));
    }
    let target = state
        .db
        .target_by_name(name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no target named {name:?}; see `portcullis target list`")))?;
    state.check_row(Row::Target(&target.id)).await?;
    if target.credential_kind != "password" {
        return Err(ServerError::BadRequest(format!(
            "target {name} logs in with {}, not a password: a password secret cannot be its credential",
            target.credential_kind
        )));
    }
    Ok(target)
}

/// A new secret checked and sealed, ready to store: its row, its first version, its facts.
struct Prepared {
    row: SecretRow,
    sealed: portcullis_crypto::envelope::Envelope,
    facts: String,
    reason: String,
}

async fn prepare(state: &crate::ServerState, caller: &Caller, req: &AddSecretRequest) -> Result<Prepared, ServerError> {
    check_name("secret", &req.name).map_err(ServerError::BadRequest)?;
    let meta = check_meta(state, &req.meta).await?;
    let reason = check_reason(&req.reason)?;
    let (value, facts) = SecretValue::parse(req.kind, open_fields(state, &req.value, &req.name)?)?;
    let target = match &req.meta.target {
        Some(name) => Some(bindable_target(state, req.kind, name).await?),
        None => None,
    };
    let now = state.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = portcullis_vault::seal(&state.root_key, &mut OsRng, &id, 1, &value)?;
    drop(value);
    let facts_text = facts_json(&facts)?;
    let row = SecretRow {
        id,
        name: req.name.clone(),
        kind: req.kind.as_str().to_string(),
        environment: meta.environment,
        folder: meta.folder,
        tags: meta.tags,
        description: meta.description,
        owner: meta.owner,
        revealable: i64::from(req.meta.revealable),
        expires_at: req.meta.expires_at.or(facts.expires_at),
        facts: facts_text.clone(),
        current_version: 1,
        versions_kept: meta.versions_kept,
        created_by: caller.user_id.clone(),
        created_at: now,
        updated_by: caller.user_id.clone(),
        updated_at: now,
        removed_at: None,
        target_id: target.as_ref().map(|t| t.id.clone()),
        target_name: target.map(|t| t.name),
        created_by_name: caller.user_name.clone(),
        updated_by_name: caller.user_name.clone(),
    };
    Ok(Prepared { row, sealed, facts: facts_text, reason })
}

async fn store(tx: &mut crate::store::Tx<'_>, state: &crate::ServerState, p: &Prepared) -> Result<(), ServerError> {
    Store::insert_secret(tx, &state.rows, &p.row).await?;
    let r = &p.row;
    Store::insert_secret_version(tx, &r.id, 1, &p.sealed, &p.facts, &r.created_by, r.created_at, &p.reason, None)
        .await?;
    Ok(())
}

pub async fn add(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<AddSecretRequest>,
) -> ApiResult<SecretView> {
    caller.require(Role::Admin)?;
    let prepared = prepare(&state, &caller, &req).await?;
    if state.db.target_by_name(&req.name).await?.is_some() {
        return Err(ServerError::Conflict(format!(
            "a target is named {:?}: a secret and a target cannot share a name (requests name either)",
            req.name
        )));
    }
    let row = &prepared.row;
    let mut tx = state.db.begin().await?;
    store(&mut tx, &state, &prepared).await?;
    state
        .record_event(
            &mut tx,
            row.created_at,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secret_added",
            serde_json::json!({ "secret": row.name, "kind": row.kind, "environment": row.environment,
                "folder": row.folder, "version": 1, "revealable": row.revealable != 0, "reason": prepared.reason }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(view(row)?))
}

/// Adds many secrets in one transaction, or none: every item is checked first (value, metadata,
/// a name no secret or target has, none twice), and the refusal names each item that failed.
pub async fn import(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Json(req): Json<ImportRequest>,
) -> ApiResult<ImportOutcome> {
    caller.require(Role::Admin)?;
    if req.items.len() > MAX_IMPORT {
        return Err(ServerError::BadRequest(format!(
            "{} secrets in one import; at most {MAX_IMPORT} (split the file)",
            req.items.len()
        )));
    }
    let source = check_reason(&req.source)?;
    let taken = state.db.taken_names().await?;
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    let mut prepared = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.iter().enumerate() {
        let why = if taken.contains(&item.name) {
            Some("the name is taken (by a secret or a target)".to_string())
        } else if !seen.insert(item.name.clone()) {
            Some("the name appears twice".to_string())
        } else {
            match prepare(&state, &caller, item).await {
                Ok(p) => {
                    prepared.push(p);
                    None
                }
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(why) = why {
            problems.push(format!("item {} ({}): {why}", i + 1, item.name));
        }
    }
    if !problems.is_empty() {
        let shown: Vec<&String> = problems.iter().take(20).collect();
        let more = if problems.len() > 20 { format!("\n... and {} more", problems.len() - 20) } else { String::new() };
        return Err(ServerError::Refused(
            "import_refused",
            format!(
                "nothing imported: {} of {} secrets cannot be added:\n{}{more}",
                problems.len(),
                req.items.len(),
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    if req.dry_run {
        return Ok(Json(ImportOutcome { imported: prepared.len(), dry_run: true }));
    }
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for p in &prepared {
        store(&mut tx, &state, p).await?;
        *kinds.entry(p.row.kind.as_str()).or_default() += 1;
    }
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secrets_imported",
            serde_json::json!({ "count": prepared.len(), "kinds": kinds, "source": source,
                "secrets": prepared.iter().map(|p| p.row.name.as_str()).collect::<Vec<_>>() }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(ImportOutcome { imported: prepared.len(), dry_run: false }))
}

/// The filter a query asks for, validated.
fn filter_of(q: &SecretQuery, now: i64) -> Result<SecretFilter, ServerError> {
    let words: Vec<String> =
        q.search.as_deref().unwrap_or_default().split_whitespace().map(str::to_lowercase).collect();
    if words.len() > 8 || words.iter().any(|w| w.len() > 64) {
        return Err(ServerError::BadRequest("search for at most 8 words of at most 64 characters".into()));
    }
    if let Some(folder) = &q.folder {
        check_folder(folder)?;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    Ok(SecretFilter {
        kind: q.kind.map(|k| k.as_str().to_string()),
        environment: q.env.clone(),
        folder: q.folder.clone().filter(|f| !f.is_empty()),
        tag: q.tag.clone(),
        words,
        expiring_before: q.expiring_within.map(|within| now.saturating_add(within)),
        removed: q.removed,
        after: q.after.clone(),
        limit: i64::from(limit) + 1,
    })
}

pub async fn list(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SecretQuery>,
) -> ApiResult<SecretPage> {
    let filter = filter_of(&q, state.clock.now())?;
    let mut rows = state.db.list_secrets(&filter).await?;
    let page = (filter.limit - 1) as usize;
    let next = if rows.len() > page {
        rows.truncate(page);
        rows.last().map(|r| r.name.clone())
    } else {
        None
    };
    let items = rows.iter().map(|r| view_for(r, &caller)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(SecretPage { items, next }))
}

async fn secret_named(state: &crate::ServerState, name: &str) -> Result<SecretRow, ServerError> {
    state
        .db
        .secret_by_name(name)
        .await?
        .ok_or_else(|| ServerError::NotFound(format!("no secret named {name:?}; see `portcullis secret list`")))
}

pub async fn show(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<SecretView> {
    let row = secret_named(&state, &name).await?;
    state.check_row(Row::Secret(&row.id)).await?;
    Ok(Json(view_for(&row, &caller)?))
}

pub async fn history(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Vec<SecretVersionView>> {
    if !caller.roles.contains(&Role::Admin) && !caller.roles.contains(&Role::Auditor) {
        return Err(ServerError::Forbidden("a secret's history is for admins and auditors".into()));
    }
    let row = secret_named(&state, &name).await?;
    state.check_row(Row::Secret(&row.id)).await?;
    let versions = state.db.secret_versions(&row.id).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| SecretVersionView {
                current: v.version == row.current_version,
                version: v.version,
                created_at: v.created_at,
                created_by: v.created_by,
                reason: v.reason,
                restored_from: v.restored_from,
                facts: facts_of(&v.facts),
                destroyed_at: v.destroyed_at,
            })
            .collect(),
    ))
}

/// Stores `value` as the next version of `row` (already changed in memory) and destroys what
/// falls past the versions kept.
#[allow(clippy::too_many_arguments)]
async fn add_version(
    state: &crate::ServerState,
    tx: &mut crate::store::Tx<'_>,
    row: &mut SecretRow,
    value: &SecretValue,
    facts: &Facts,
    by: &str,
    reason: &str,
    restored_from: Option<i64>,
) -> Result<(), ServerError> {
    let version = row.current_version + 1;
    let sealed = portcullis_vault::seal(&state.root_key, &mut OsRng, &row.id, version, value)?;
    let facts_text = facts_json(facts)?;
    Store::insert_secret_version(tx, &row.id, version, &sealed, &facts_text, by, row.updated_at, reason, restored_from)
        .await?;
    row.current_version = version;
    row.facts = facts_text;
    Ok(())
}

pub async fn edit(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<EditSecretRequest>,
) -> ApiResult<SecretView> {
    caller.require(Role::Admin)?;
    let reason = check_reason(&req.reason)?;
    let mut tx = state.db.begin().await?;
    let mut row = secret_for_change(&state, &mut tx, &name).await?;
    if row.removed_at.is_some() {
        return Err(ServerError::Conflict(format!("secret {name} was removed; nothing about it changes now")));
    }
    let kind = kind_of(&row)?;
    let current = SecretMeta {
        environment: req.environment.clone().unwrap_or(row.environment.clone()),
        folder: req.folder.clone().unwrap_or(row.folder.clone()),
        tags: req.tags.clone().unwrap_or_else(|| crate::store::csv_list(&row.tags)),
        description: req.description.clone().unwrap_or(row.description.clone()),
        owner: req.owner.clone().unwrap_or(row.owner.clone()),
        expires_at: None,
        revealable: req.revealable.unwrap_or(row.revealable != 0),
        versions_kept: Some(req.versions_kept.unwrap_or(row.versions_kept)),
        target: None,
    };
    let meta = check_meta(&state, &current).await?;
    let now = state.clock.now();
    let mut changed: Vec<&str> = Vec::new();
    for (what, before, after) in [
        ("environment", &row.environment, &meta.environment),
        ("folder", &row.folder, &meta.folder),
        ("tags", &row.tags, &meta.tags),
        ("description", &row.description, &meta.description),
        ("owner", &row.owner, &meta.owner),
    ] {
        if before != after {
            changed.push(what);
        }
    }
    if current.revealable != (row.revealable != 0) {
        changed.push("revealable");
    }
    if meta.versions_kept != row.versions_kept {
        changed.push("versions kept");
    }
    row.environment = meta.environment;
    row.folder = meta.folder;
    row.tags = meta.tags;
    row.description = meta.description;
    row.owner = meta.owner;
    row.revealable = i64::from(current.revealable);
    row.versions_kept = meta.versions_kept;
    row.updated_by = caller.user_id.clone();
    row.updated_at = now;
    if let Some(sealed) = &req.value {
        let (value, facts) = merged_value(&state, &mut tx, &row, kind, sealed).await?;
        add_version(&state, &mut tx, &mut row, &value, &facts, &caller.user_id, &reason, None).await?;
        row.expires_at = facts.expires_at;
        changed.push("value");
    }
    if let Some(expiry) = req.expires_at {
        row.expires_at = expiry.or(facts_of(&row.facts).expires_at);
        changed.push("expiry");
    }
    if changed.is_empty() {
        return Err(ServerError::BadRequest("nothing to change".into()));
    }
    let detail = serde_json::json!({ "changed": changed, "reason": reason });
    commit_change(&state, tx, &caller, &row, "secret_changed", detail).await
}

/// Stores `row` as changed (its `updated_at` is the change's time), destroys what falls past
/// the versions it keeps, records `kind` with `detail` (plus the secret, its version and what
/// was destroyed) and commits: the end of every change to a secret.
async fn commit_change(
    state: &crate::ServerState,
    mut tx: crate::store::Tx<'_>,
    caller: &Caller,
    row: &SecretRow,
    kind: &str,
    mut detail: serde_json::Value,
) -> ApiResult<SecretView> {
    let now = row.updated_at;
    let destroyed =
        Store::destroy_old_secret_versions(&mut tx, &row.id, row.current_version, row.versions_kept, now).await?;
    Store::update_secret(&mut tx, &state.rows, row).await?;
    detail["secret"] = row.name.clone().into();
    detail["version"] = row.current_version.into();
    detail["versions_destroyed"] = destroyed.into();
    state.record_event(&mut tx, now, Some(&caller.user_id), Some(&caller.device_id), kind, detail).await?;
    tx.commit().await?;
    Ok(Json(view(row)?))
}

pub async fn restore(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<RestoreSecretRequest>,
) -> ApiResult<SecretView> {
    caller.require(Role::Admin)?;
    let reason = check_reason(&req.reason)?;
    let mut tx = state.db.begin().await?;
    let mut row = secret_for_change(&state, &mut tx, &name).await?;
    if row.removed_at.is_some() {
        return Err(ServerError::Conflict(format!("secret {name} was removed")));
    }
    if req.version == row.current_version {
        return Err(ServerError::BadRequest(format!("version {} is already the current one", req.version)));
    }
    let kind = kind_of(&row)?;
    let Some(envelope) = Store::secret_envelope(&mut tx, &row.id, req.version).await? else {
        return Err(ServerError::NotFound(format!(
            "secret {name} has no version {} to restore (never made, or destroyed past the {} versions kept); \
             see `portcullis secret history {name}`",
            req.version, row.versions_kept
        )));
    };
    let old = portcullis_vault::open(&state.root_key, &envelope, &row.id, req.version, kind)?;
    let (value, facts) = SecretValue::parse(kind, old.fields().map(|(n, v)| (n.to_string(), v.clone())).collect())?;
    drop(old);
    let now = state.clock.now();
    row.updated_by = caller.user_id.clone();
    row.updated_at = now;
    let reason = if reason.is_empty() { format!("restored version {}", req.version) } else { reason };
    add_version(&state, &mut tx, &mut row, &value, &facts, &caller.user_id, &reason, Some(req.version)).await?;
    drop(value);
    row.expires_at = facts.expires_at;
    let detail = serde_json::json!({ "restored": req.version, "reason": reason });
    commit_change(&state, tx, &caller, &row, "secret_restored", detail).await
}

pub async fn remove(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<RemoveSecretRequest>,
) -> ApiResult<SecretView> {
    caller.require(Role::Admin)?;
    let reason = check_reason(&req.reason)?;
    let mut tx = state.db.begin().await?;
    let mut row = secret_for_change(&state, &mut tx, &name).await?;
    if row.removed_at.is_some() {
        return Err(ServerError::Conflict(format!("secret {name} was already removed")));
    }
    let now = state.clock.now();
    row.removed_at = Some(now);
    row.updated_by = caller.user_id.clone();
    row.updated_at = now;
    commit_change(&state, tx, &caller, &row, "secret_removed", serde_json::json!({ "reason": reason })).await
}

/// Deletes a removed secret and every version of it for good; the event stays in the log.
pub async fn purge(
    State(state): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<RemoveSecretRequest>,
) -> ApiResult<serde_json::Value> {
    caller.require(Role::Admin)?;
    let reason = check_reason(&req.reason)?;
    let mut tx = state.db.begin().await?;
    let row = secret_for_change(&state, &mut tx, &name).await?;
    if row.removed_at.is_none() {
        return Err(ServerError::Conflict(format!(
            "secret {name} is in use; remove it first (`portcullis secret remove {name}`), then purge"
        )));
    }
    let now = state.clock.now();
    let deleted = Store::purge_secret(&mut tx, &state.rows, &row.id, now).await?;
    state
        .record_event(
            &mut tx,
            now,
            Some(&caller.user_id),
            Some(&caller.device_id),
            "secret_purged",
            serde_json::json!({ "secret": row.name, "kind": row.kind, "versions": row.current_version,
                "history_kept": !deleted, "reason": reason }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({ "purged": row.name, "versions": row.current_version, "history_kept": !deleted })))
}
