//! The policy set in force, loaded from the store, and the facts decisions are made on.

use std::sync::{Arc, RwLock};

use jiff::tz::TimeZone;
use portcullis_policy::{Person, PolicySet, TargetFacts};

use crate::ServerError;
use crate::rows::{Row, RowKey};
use crate::store::{Store, TargetRow, UserDetailRow, csv_list};

/// The policy set in force (its version), or why the stored one does not compile: then every
/// request and approval is refused until an admin stores one that does.
pub struct Loaded {
    pub version: i64,
    pub set: Result<PolicySet, String>,
}

pub struct Policies {
    current: RwLock<Arc<Loaded>>,
    /// `weekday` and `time_of_day` are local to this zone (`TZ`, UTC by default).
    pub time_zone: TimeZone,
    pub time_zone_name: String,
}

impl Policies {
    /// Loads the newest stored set; a store without one gets the built-in default.
    pub async fn load(db: &Store, rows: &RowKey, now: i64) -> Result<Self, ServerError> {
        let tz_name = std::env::var("TZ").ok();
        let time_zone = portcullis_policy::time_zone_named(tz_name.as_deref()).map_err(ServerError::BadRequest)?;
        let time_zone_name = time_zone.iana_name().unwrap_or("UTC").to_string();
        if db.current_policy().await?.is_none() {
            let mut tx = db.begin().await?;
            let version = Store::insert_policy(&mut tx, portcullis_policy::DEFAULT_POLICIES, now, None).await?;
            rows.seal(&mut tx, Row::Policy(version)).await?;
            tx.commit().await?;
        }
        let loaded = Self::read(db, rows).await?;
        Ok(Self { current: RwLock::new(Arc::new(loaded)), time_zone, time_zone_name })
    }

    /// The newest stored set, checked and compiled.
    async fn read(db: &Store, rows: &RowKey) -> Result<Loaded, ServerError> {
        let row = db.current_policy().await?.ok_or_else(|| ServerError::Internal("no policy set stored".into()))?;
        let authentic = rows.check(&mut db.conn().await?, Row::Policy(row.version)).await;
        let set = match authentic {
            Err(e) => Err(format!("{e}; refusing all requests until an admin stores a policy set")),
            Ok(()) => PolicySet::compile(&row.text).map_err(|e| {
                tracing::error!(version = row.version, error = %e, "the stored policy set does not compile; refusing all requests");
                format!("the policy set in force (version {}) does not compile: {e}", row.version)
            }),
        };
        Ok(Loaded { version: row.version, set })
    }

    /// The set in force now, for a decision: the store says which version that is (another
    /// replica may have stored a newer one a moment ago), and this replica's compiled copy is
    /// used while it is that version, else the newer one is loaded first.
    pub async fn in_force(&self, db: &Store, rows: &RowKey) -> Result<Arc<Loaded>, ServerError> {
        let cached = self.current();
        if db.policy_version().await? == Some(cached.version) {
            return Ok(cached);
        }
        let loaded = Arc::new(Self::read(db, rows).await?);
        if loaded.version > self.current().version {
            self.install(loaded.clone());
        }
        Ok(loaded)
    }

    /// This replica's copy (see [`Policies::in_force`] for decisions).
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, version: i64, set: PolicySet) {
        self.install(Arc::new(Loaded { version, set: Ok(set) }))
    }

    fn install(&self, loaded: Arc<Loaded>) {
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
    }
}

impl Loaded {
    pub fn usable(&self) -> Result<&PolicySet, ServerError> {
        self.set.as_ref().map_err(|why| ServerError::Refused("policy_unusable", why.clone()))
    }
}

pub fn person(user: &UserDetailRow) -> Person {
    Person { name: user.name.clone(), roles: csv_list(&user.roles), groups: csv_list(&user.groups) }
}

pub fn target_facts(target: &TargetRow) -> TargetFacts {
    TargetFacts {
        name: target.name.clone(),
        environment: target.environment.clone(),
        tags: csv_list(&target.tags),
        ..Default::default()
    }
}

/// A vault secret as policies see it (`Portcullis::Secret`).
pub fn secret_facts(secret: &crate::store::SecretRow) -> TargetFacts {
    TargetFacts {
        name: secret.name.clone(),
        environment: secret.environment.clone(),
        tags: csv_list(&secret.tags),
        secret: Some(portcullis_policy::SecretAttrs { kind: secret.kind.clone(), folder: secret.folder.clone() }),
    }
}

/// A Unix time as the policy engine's instant.
pub fn timestamp(unix: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(unix).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
