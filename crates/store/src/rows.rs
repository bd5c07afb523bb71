//! Authenticated rows: the rows the server decides with — users (roles, groups, who created
//! them, disabled), devices, gateways, policy sets, security keys, confirmations, session
//! authorisations, grants (their revocation), targets (address, login, host key, credential,
//! environment, tags, gateway) and enrolment codes (their user, expiry, use) — carry an HMAC-SHA256 under
//! a key derived from the root key, computed over what the decision reads. A row added or
//! changed behind the server's back (a DBA, a restored dump, an attacker on the host) fails its
//! check and is refused, never trusted: `row_not_authentic`, and an error in the log.
//!
//! Every write path reseals the row it changed, in the same transaction ([`RowKey::seal`]);
//! every decision path checks the rows it reads ([`RowKey::check`]). The key never leaves the
//! process: the database alone cannot forge a MAC.
//!
//! A MAC alone would accept an older sealed copy of a row put back (a revoked grant restored
//! from a dump). So every seal is also an entry of the row ledger (`row_ledger`): the row, its
//! new MAC, and a chain MAC over the previous entry's chain — and a row is current only if its
//! MAC is the newest one the ledger holds for it (a row the ledger says exists must exist).
//! Each security event records the ledger's head (`rows_seq`, `rows_head`) in the server's
//! signed log, so cutting the ledger back is caught by `audit verify` too.

use portcullis_crypto::SymmetricKey;
use sqlx::Row as _;

use crate::{Connection, on};

use crate::StoreError;

/// A row the server decides with.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// A user with its roles, creator, disabled mark and group memberships (ids and names).
    User(&'a str),
    Device(&'a str),
    Gateway(&'a str),
    Policy(i64),
    SecurityKey(&'a str),
    /// A user's independent confirmation (separation of duties), by user id.
    Confirmation(&'a str),
    /// A gateway's confirmation by a second admin, by gateway id.
    GatewayConfirmation(&'a str),
    /// A session the server let a gateway open, by id.
    SessionAuthorization(&'a str),
    /// A grant: whose, for what, until when, and whether it was revoked.
    Grant(&'a str),
    /// A target: where it is, who logs in, its host key, credential, policy facts, gateway.
    Target(&'a str),
    /// An enrolment code, by the hash of its secret: whose, until when, used or not.
    EnrolmentCode(&'a str),
    /// A vault secret: its name, kind, policy facts (environment, folder, tags), whether it may
    /// be revealed, its current version, expiry and removal.
    Secret(&'a str),
    /// A secret's check-out: whose, under which grant, which version, until when, how it ended.
    Checkout(&'a str),
    /// A rotation of a bound secret: which, from which version, its candidate, how it ended.
    Rotation(&'a str),
    /// One approver's review of a request: the decision, when, the policies and step-up.
    Review {
        request: &'a str,
        approver: &'a str,
    },
    /// A WebAuthn ceremony: whose, for what, its state, until when, used or not.
    Challenge(&'a str),
    /// A role, group or creation change of `user` by `actor` (separation of duties), by rowid.
    AdminChange {
        user: &'a str,
        actor: &'a str,
        id: i64,
    },
    /// A server setting (standalone owner, when session checks began, ...), by name.
    Setting(&'a str),
}

impl Row<'_> {
    /// The row's name in the ledger.
    pub fn ledger_key(&self) -> String {
        match self {
            Row::User(id) => format!("users/{id}"),
            Row::Device(id) => format!("devices/{id}"),
            Row::Gateway(id) => format!("gateways/{id}"),
            Row::Policy(v) => format!("policy_sets/{v}"),
            Row::SecurityKey(id) => format!("security_keys/{id}"),
            Row::Confirmation(id) => format!("user_confirmations/{id}"),
            Row::GatewayConfirmation(id) => format!("gateway_confirmations/{id}"),
            Row::SessionAuthorization(id) => format!("session_authorizations/{id}"),
            Row::Grant(id) => format!("grants/{id}"),
            Row::Target(id) => format!("targets/{id}"),
            Row::Secret(id) => format!("secrets/{id}"),
            Row::Checkout(id) => format!("secret_checkouts/{id}"),
            Row::Rotation(id) => format!("secret_rotations/{id}"),
            Row::EnrolmentCode(hash) => format!("enrolment_codes/{hash}"),
            Row::Review { request, approver } => format!("reviews/{request}/{approver}"),
            Row::Challenge(id) => format!("webauthn_challenges/{id}"),
            Row::AdminChange { user, actor, id } => format!("user_admin_changes/{user}/{actor}/{id}"),
            Row::Setting(name) => format!("server_settings/{name}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Row::User(id) => format!("user {id}"),
            Row::Device(id) => format!("device {id}"),
            Row::Gateway(id) => format!("gateway {id}"),
            Row::Policy(v) => format!("policy set version {v}"),
            Row::SecurityKey(id) => format!("security key {id}"),
            Row::Confirmation(id) => format!("the confirmation of user {id}"),
            Row::GatewayConfirmation(id) => format!("the confirmation of gateway {id}"),
            Row::SessionAuthorization(id) => format!("session authorisation {id}"),
            Row::Grant(id) => format!("grant {id}"),
            Row::Target(id) => format!("target {id}"),
            Row::Secret(id) => format!("secret {id}"),
            Row::Checkout(id) => format!("check-out {id}"),
            Row::Rotation(id) => format!("rotation {id}"),
            Row::EnrolmentCode(hash) => format!("enrolment code {}…", &hash[..hash.len().min(12)]),
            Row::Review { request, approver } => format!("the review of request {request} by user {approver}"),
            Row::Challenge(id) => format!("security-key challenge {id}"),
            Row::AdminChange { user, actor, id } => format!("change {id} of user {user} by {actor}"),
            Row::Setting(name) => format!("setting {name}"),
        }
    }

    /// (what the MAC covers, the UPDATE that stores it) — every column as text.
    fn sql(&self) -> (&'static str, &'static str) {
        match self {
            Row::User(_) => (
                "SELECT 'users', id, name, roles, COALESCE(created_by, ''), COALESCE(CAST(disabled_at AS TEXT), ''), \
                 COALESCE((SELECT string_agg(g.id || ':' || g.name, ',' ORDER BY g.id) FROM user_groups ug \
                 JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = users.id), ''), mac \
                 FROM users WHERE id = $1",
                "UPDATE users SET mac = $1 WHERE id = $2",
            ),
            Row::Device(_) => (
                "SELECT 'devices', id, user_id, hex(sign_public_key), hex(seal_public_key), \
                 COALESCE(CAST(revoked_at AS TEXT), ''), mac FROM devices WHERE id = $1",
                "UPDATE devices SET mac = $1 WHERE id = $2",
            ),
            Row::Gateway(_) => (
                "SELECT 'gateways', id, name, CAST(embedded AS TEXT), COALESCE(hex(sign_public_key), ''), \
                 COALESCE(hex(seal_public_key), ''), COALESCE(host_key, ''), COALESCE(CAST(revoked_at AS TEXT), ''), mac \
                 FROM gateways WHERE id = $1",
                "UPDATE gateways SET mac = $1 WHERE id = $2",
            ),
            Row::Policy(_) => (
                "SELECT 'policy_sets', CAST(version AS TEXT), text, COALESCE(created_by, ''), mac \
                 FROM policy_sets WHERE version = $1",
                "UPDATE policy_sets SET mac = $1 WHERE version = $2",
            ),
            Row::SecurityKey(_) => (
                "SELECT 'security_keys', id, user_id, credential_id, passkey, COALESCE(CAST(removed_at AS TEXT), ''), mac \
                 FROM security_keys WHERE id = $1",
                "UPDATE security_keys SET mac = $1 WHERE id = $2",
            ),
            Row::Confirmation(_) => (
                "SELECT 'user_confirmations', user_id, confirmed_by, via, CAST(at AS TEXT), mac \
                 FROM user_confirmations WHERE user_id = $1",
                "UPDATE user_confirmations SET mac = $1 WHERE user_id = $2",
            ),
            Row::GatewayConfirmation(_) => (
                "SELECT 'gateway_confirmations', gateway_id, COALESCE(confirmed_by, ''), via, sign_public_key, \
                 CAST(at AS TEXT), mac FROM gateway_confirmations WHERE gateway_id = $1",
                "UPDATE gateway_confirmations SET mac = $1 WHERE gateway_id = $2",
            ),
            Row::SessionAuthorization(_) => (
                "SELECT 'session_authorizations', id, writer_id, grant_id, user_name, target, login, \
                 CAST(authorized_at AS TEXT), mac FROM session_authorizations WHERE id = $1",
                "UPDATE session_authorizations SET mac = $1 WHERE id = $2",
            ),
            Row::Grant(_) => (
                "SELECT 'grants', id, request_id, user_id, device_id, \
                 COALESCE(target_id, 'secret:' || secret_id || '/' || access), CAST(not_before AS TEXT), \
                 CAST(not_after AS TEXT), signed, COALESCE(CAST(revoked_at AS TEXT), ''), mac FROM grants WHERE id = $1",
                "UPDATE grants SET mac = $1 WHERE id = $2",
            ),
            Row::Target(_) => (
                "SELECT 'targets', id, name, host, CAST(port AS TEXT), login, host_key, credential_kind, \
                 CAST(credential_version AS TEXT), hex(credential_data_key), hex(credential), created_by, \
                 environment, tags, COALESCE(gateway_id, ''), mac FROM targets WHERE id = $1",
                "UPDATE targets SET mac = $1 WHERE id = $2",
            ),
            Row::Secret(_) => (
                "SELECT 'secrets', id, name, kind || COALESCE('@' || target_id, ''), environment, folder, tags, description, owner, \
                 CAST(revealable AS TEXT), COALESCE(CAST(expires_at AS TEXT), ''), facts, CAST(current_version AS TEXT), \
                 CAST(versions_kept AS TEXT), created_by, COALESCE(CAST(removed_at AS TEXT), ''), mac \
                 FROM secrets WHERE id = $1",
                "UPDATE secrets SET mac = $1 WHERE id = $2",
            ),
            Row::Checkout(_) => (
                "SELECT 'secret_checkouts', id, secret_id, grant_id, user_id, device_id, CAST(version AS TEXT), \
                 CAST(checked_out_at AS TEXT), CAST(until AS TEXT), COALESCE(CAST(checked_in_at AS TEXT), ''), \
                 COALESCE(ended_by, ''), mac FROM secret_checkouts WHERE id = $1",
                "UPDATE secret_checkouts SET mac = $1 WHERE id = $2",
            ),
            Row::Rotation(_) => (
                "SELECT 'secret_rotations', id, secret_id, target_id, CAST(from_version AS TEXT), \
                 COALESCE(hex(data_key), ''), COALESCE(hex(ciphertext), ''), reason, requested_by, state, COALESCE(stage, ''), \
                 CAST(created_at AS TEXT), COALESCE(CAST(version AS TEXT), ''), mac FROM secret_rotations WHERE id = $1",
                "UPDATE secret_rotations SET mac = $1 WHERE id = $2",
            ),
            Row::EnrolmentCode(_) => (
                "SELECT 'enrolment_codes', code_hash, user_id, CAST(created_at AS TEXT), CAST(expires_at AS TEXT), \
                 COALESCE(CAST(used_at AS TEXT), ''), mac FROM enrolment_codes WHERE code_hash = $1",
                "UPDATE enrolment_codes SET mac = $1 WHERE code_hash = $2",
            ),
            Row::Review { .. } => (
                "SELECT 'reviews', request_id, approver_id, COALESCE(device_id, ''), decision, COALESCE(reason, ''), \
                 CAST(at AS TEXT), COALESCE(source_ip, ''), policies, COALESCE(step_up, ''), mac \
                 FROM reviews WHERE request_id = $1 AND approver_id = $2",
                "UPDATE reviews SET mac = $1 WHERE request_id = $2 AND approver_id = $3",
            ),
            Row::Challenge(_) => (
                "SELECT 'webauthn_challenges', id, user_id, purpose, COALESCE(request_id, ''), COALESCE(decision, ''), \
                 COALESCE(key_name, ''), state, CAST(created_at AS TEXT), CAST(expires_at AS TEXT), \
                 COALESCE(CAST(used_at AS TEXT), ''), mac FROM webauthn_challenges WHERE id = $1",
                "UPDATE webauthn_challenges SET mac = $1 WHERE id = $2",
            ),
            Row::AdminChange { .. } => (
                "SELECT 'user_admin_changes', CAST(rowid AS TEXT), user_id, actor_id, CAST(at AS TEXT), change, mac \
                 FROM user_admin_changes WHERE rowid = $1",
                "UPDATE user_admin_changes SET mac = $1 WHERE rowid = $2",
            ),
            Row::Setting(_) => (
                "SELECT 'server_settings', name, value, mac FROM server_settings WHERE name = $1",
                "UPDATE server_settings SET mac = $1 WHERE name = $2",
            ),
        }
    }

    fn bind<'q, DB: sqlx::Database>(
        &self,
        q: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
    where
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        match *self {
            Row::User(id)
            | Row::Device(id)
            | Row::Gateway(id)
            | Row::SecurityKey(id)
            | Row::Confirmation(id)
            | Row::GatewayConfirmation(id)
            | Row::SessionAuthorization(id)
            | Row::Grant(id)
            | Row::Target(id)
            | Row::Secret(id)
            | Row::Checkout(id)
            | Row::Rotation(id)
            | Row::EnrolmentCode(id)
            | Row::Challenge(id) => q.bind(id.to_string()),
            Row::Review { request, approver } => q.bind(request.to_string()).bind(approver.to_string()),
            Row::Policy(v) | Row::AdminChange { id: v, .. } => q.bind(v),
            Row::Setting(name) => q.bind(name.to_string()),
        }
    }
}

pub struct RowKey(SymmetricKey);

/// (seq, row, MAC or none for a deletion, chain) of one ledger entry.
type LedgerEntry = (i64, String, Option<Vec<u8>>, Vec<u8>);

impl RowKey {
    pub fn new(root: &SymmetricKey) -> Self {
        Self(root.derive("rows/mac/v1"))
    }

    /// (MAC over the row's content, the stored MAC); `None` when the row does not exist.
    async fn material(
        &self,
        conn: &mut dyn Connection,
        row: Row<'_>,
    ) -> Result<Option<([u8; 32], Option<Vec<u8>>)>, StoreError> {
        let (select, _) = row.sql();
        let found: Option<(Vec<String>, Option<Vec<u8>>)> = on!(conn, ex => {
            match row.bind(sqlx::query(select)).fetch_optional(ex).await? {
                None => None,
                Some(found) => {
                    let n = found.len();
                    let mut parts = Vec::with_capacity(n - 1);
                    for i in 0..n - 1 {
                        parts.push(found.try_get::<String, _>(i)?);
                    }
                    Some((parts, found.try_get::<Option<Vec<u8>>, _>(n - 1)?))
                }
            }
        });
        let Some((parts, stored)) = found else { return Ok(None) };
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        Ok(Some((self.0.mac(&refs), stored)))
    }

    /// Stores the MAC of the row as it is now (call after changing it, in the same transaction).
    pub async fn seal(&self, conn: &mut dyn Connection, row: Row<'_>) -> Result<(), StoreError> {
        let Some((mac, _)) = self.material(conn, row).await? else {
            return Err(StoreError::Internal(format!("{} vanished while being sealed", row.describe())));
        };
        let (_, update) = row.sql();
        on!(conn, ex => row.bind(sqlx::query(update).bind(mac.to_vec())).execute(ex).await.map(|r| r.rows_affected()))?;
        self.ledger_append(conn, &row.ledger_key(), Some(&mac)).await
    }

    /// Notes in the ledger that the server deleted `row` (a lapsed ceremony).
    pub async fn forget(&self, conn: &mut dyn Connection, row: Row<'_>) -> Result<(), StoreError> {
        self.ledger_append(conn, &row.ledger_key(), None).await
    }

    fn chain(&self, previous: &[u8], key: &str, mac: Option<&[u8]>) -> [u8; 32] {
        self.0.mac(&[b"row-ledger/v1", previous, key.as_bytes(), mac.unwrap_or(b"deleted")])
    }

    async fn ledger_append(
        &self,
        conn: &mut dyn Connection,
        key: &str,
        mac: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        let previous: Option<Vec<u8>> = on!(conn, ex => sqlx::query_scalar("SELECT chain FROM row_ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(ex).await)?;
        let chain = self.chain(previous.as_deref().unwrap_or_default(), key, mac.map(|m| &m[..]));
        on!(conn, ex => sqlx::query("INSERT INTO row_ledger (row, mac, chain) VALUES ($1, $2, $3)")
            .bind(key)
            .bind(mac.map(|m| m.to_vec()))
            .bind(chain.to_vec())
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The newest MAC the ledger holds for `key`: `None` if never sealed, `Some(None)` if the
    /// server deleted it.
    async fn ledger_latest(&self, conn: &mut dyn Connection, key: &str) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        Ok(on!(conn, ex => sqlx::query_scalar("SELECT mac FROM row_ledger WHERE row = $1 ORDER BY seq DESC LIMIT 1")
            .bind(key)
            .fetch_optional(ex).await)?)
    }

    /// Recomputes the whole chain: the first entry whose chain does not follow is named.
    pub async fn ledger_problem(&self, conn: &mut dyn Connection) -> Result<Option<String>, StoreError> {
        let entries: Vec<LedgerEntry> = on!(conn, ex => sqlx::query_as("SELECT seq, row, mac, chain FROM row_ledger ORDER BY seq").fetch_all(ex).await)?;
        let mut previous: Vec<u8> = Vec::new();
        for (seq, key, mac, chain) in entries {
            let expected = self.chain(&previous, &key, mac.as_deref());
            if !portcullis_crypto::constant_time_eq(&expected, &chain) {
                return Ok(Some(format!(
                    "entry {seq} of the row ledger ({key}) was changed or an entry before it removed"
                )));
            }
            previous = chain;
        }
        Ok(None)
    }

    /// The ledger's chain at `seq` (hex), if that entry exists.
    pub async fn ledger_chain_at(&self, conn: &mut dyn Connection, seq: i64) -> Result<Option<String>, StoreError> {
        let chain: Option<Vec<u8>> = on!(conn, ex => sqlx::query_scalar("SELECT chain FROM row_ledger WHERE seq = $1")
            .bind(seq)
            .fetch_optional(ex).await)?;
        Ok(chain.map(hex::encode))
    }

    /// Every change between `a` and `b` ever sealed must still be there and authentic: a
    /// deleted one would lift a separation-of-duties bar.
    pub async fn check_changes_between(&self, conn: &mut dyn Connection, a: &str, b: &str) -> Result<(), StoreError> {
        for (user, actor) in [(a, b), (b, a)] {
            let low = format!("user_admin_changes/{user}/{actor}/");
            let high = format!("user_admin_changes/{user}/{actor}0");
            let keys: Vec<String> = on!(conn, ex => sqlx::query_scalar("SELECT DISTINCT row FROM row_ledger WHERE row >= $1 AND row < $2")
                    .bind(&low)
                    .bind(&high)
                    .fetch_all(ex).await)?;
            for key in &keys {
                if let Some(row) = row_of_ledger_key(key) {
                    self.check(conn, row).await?;
                }
            }
        }
        Ok(())
    }

    /// Enters every sealed row that is not in the ledger yet, as it is now — once, in the start
    /// that creates the ledger.
    pub async fn anchor_unledgered(&self, conn: &mut dyn Connection) -> Result<u64, StoreError> {
        let mut entered = 0;
        for (table, key) in AUTHENTICATED_TABLES {
            let sealed: Vec<(String, Vec<u8>)> = on!(conn, ex => sqlx::query_as(&format!("SELECT {key}, mac FROM {table} WHERE mac IS NOT NULL"))
                    .fetch_all(ex).await)?;
            for (key, mac) in sealed {
                if self.ledger_latest(conn, &key).await?.is_none() {
                    let Ok(mac) = <[u8; 32]>::try_from(mac) else { continue };
                    self.ledger_append(conn, &key, Some(&mac)).await?;
                    entered += 1;
                }
            }
        }
        Ok(entered)
    }

    /// Refuses a row whose content does not match its MAC (or that has none). A row that does
    /// not exist passes: callers decide what absence means.
    pub async fn check(&self, conn: &mut dyn Connection, row: Row<'_>) -> Result<(), StoreError> {
        let newest = self.ledger_latest(conn, &row.ledger_key()).await?;
        match self.material(conn, row).await? {
            None if matches!(newest, Some(Some(_))) => {
                tracing::error!(row = %row.describe(), "a row was deleted outside Portcullis; refusing");
                Err(StoreError::NotAuthentic(format!(
                    "{} was deleted outside Portcullis (the row ledger holds it); refusing",
                    row.describe()
                )))
            }
            None => Ok(()),
            Some((mac, Some(stored)))
                if portcullis_crypto::constant_time_eq(&mac, &stored)
                    && newest.as_ref().is_none_or(|n| n.as_deref() == Some(&mac[..])) =>
            {
                Ok(())
            }
            Some((mac, Some(stored))) if portcullis_crypto::constant_time_eq(&mac, &stored) => {
                tracing::error!(row = %row.describe(), "an older copy of a row was put back; refusing it");
                Err(StoreError::NotAuthentic(format!(
                    "{} is an older copy put back outside Portcullis (the row ledger holds a newer one); \
                         refusing to trust it",
                    row.describe()
                )))
            }
            Some(_) => {
                tracing::error!(row = %row.describe(), "a row was changed outside Portcullis; refusing it");
                Err(StoreError::NotAuthentic(format!(
                    "{} was changed outside Portcullis (its authentication does not match); refusing to trust it",
                    row.describe()
                )))
            }
        }
    }

    /// Seals the rows of `tables` that have no MAC yet, trusted as they are at that moment —
    /// once, in the start that gives them their MAC (see the callers), and by `init` for what
    /// the store's migrations wrote.
    pub async fn seal_unsealed(&self, conn: &mut dyn Connection, tables: &[&str]) -> Result<u64, StoreError> {
        let mut sealed = 0;
        for key in ledger_keys(conn, tables, "mac IS NULL").await? {
            if let Some(row) = row_of_ledger_key(&key) {
                self.seal(conn, row).await?;
                sealed += 1;
            }
        }
        Ok(sealed)
    }
}

/// Every table of authenticated rows, in the order verification reports them, with the SQL
/// expression of a row's ledger key (what [`Row::ledger_key`] gives, and
/// [`row_of_ledger_key`] reads back).
pub const AUTHENTICATED_TABLES: &[(&str, &str)] = &[
    ("users", "'users/' || id"),
    ("devices", "'devices/' || id"),
    ("gateways", "'gateways/' || id"),
    ("policy_sets", "'policy_sets/' || version"),
    ("security_keys", "'security_keys/' || id"),
    ("user_confirmations", "'user_confirmations/' || user_id"),
    ("gateway_confirmations", "'gateway_confirmations/' || gateway_id"),
    ("session_authorizations", "'session_authorizations/' || id"),
    ("grants", "'grants/' || id"),
    ("targets", "'targets/' || id"),
    ("secrets", "'secrets/' || id"),
    ("secret_checkouts", "'secret_checkouts/' || id"),
    ("enrolment_codes", "'enrolment_codes/' || code_hash"),
    ("reviews", "'reviews/' || request_id || '/' || approver_id"),
    ("webauthn_challenges", "'webauthn_challenges/' || id"),
    ("user_admin_changes", "'user_admin_changes/' || user_id || '/' || actor_id || '/' || rowid"),
    ("server_settings", "'server_settings/' || name"),
];

/// The ledger keys of the rows of `tables` (names from [`AUTHENTICATED_TABLES`]) matching
/// `filter`, table by table in that order.
pub async fn ledger_keys(conn: &mut dyn Connection, tables: &[&str], filter: &str) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for (table, key) in AUTHENTICATED_TABLES.iter().filter(|(t, _)| tables.contains(t)) {
        let found: Vec<String> = on!(conn, ex => sqlx::query_scalar(&format!("SELECT {key} FROM {table} WHERE {filter} ORDER BY 1"))
            .fetch_all(ex).await)?;
        keys.extend(found);
    }
    Ok(keys)
}

/// The row ledger's head now: (seq, chain as hex), for the security event being recorded.
pub async fn ledger_head(conn: &mut dyn Connection) -> Result<Option<(i64, String)>, StoreError> {
    let head: Option<(i64, Vec<u8>)> = on!(conn, ex => sqlx::query_as("SELECT seq, chain FROM row_ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(ex).await)?;
    Ok(head.map(|(seq, chain)| (seq, hex::encode(chain))))
}

/// The row a ledger key names (`table/id`, reviews `reviews/request/approver`).
pub fn row_of_ledger_key(key: &str) -> Option<Row<'_>> {
    let (table, id) = key.split_once('/')?;
    Some(match table {
        "users" => Row::User(id),
        "devices" => Row::Device(id),
        "gateways" => Row::Gateway(id),
        "policy_sets" => Row::Policy(id.parse().ok()?),
        "security_keys" => Row::SecurityKey(id),
        "user_confirmations" => Row::Confirmation(id),
        "gateway_confirmations" => Row::GatewayConfirmation(id),
        "session_authorizations" => Row::SessionAuthorization(id),
        "grants" => Row::Grant(id),
        "targets" => Row::Target(id),
        "secrets" => Row::Secret(id),
        "secret_checkouts" => Row::Checkout(id),
        "secret_rotations" => Row::Rotation(id),
        "enrolment_codes" => Row::EnrolmentCode(id),
        "reviews" => {
            let (request, approver) = id.split_once('/')?;
            Row::Review { request, approver }
        }
        "webauthn_challenges" => Row::Challenge(id),
        "user_admin_changes" => {
            let (user, rest) = id.split_once('/')?;
            let (actor, rowid) = rest.split_once('/')?;
            Row::AdminChange { user, actor, id: rowid.parse().ok()? }
        }
        "server_settings" => Row::Setting(id),
        _ => return None,
    })
}

/// How many entries the row ledger holds.
pub async fn ledger_len(conn: &mut dyn Connection) -> Result<i64, StoreError> {
    Ok(on!(conn, ex => sqlx::query_scalar("SELECT COUNT(*) FROM row_ledger").fetch_one(ex).await)?)
}
