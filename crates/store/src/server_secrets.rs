//! The server's own secrets (signing, sealing, TLS, user CA, the embedded gateway's keys),
//! each sealed under the root key with AAD naming it.

use crate::{Store, StoreError, on};
use portcullis_crypto::{Aad, OsRng, SecretBytes, SymmetricKey};

fn secret_aad(name: &str) -> Aad {
    Aad::for_field("server_secrets", name, 1, "ciphertext")
}

impl Store {
    pub async fn put_server_secret(&self, root: &SymmetricKey, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let ct = root.seal(&mut OsRng, value, &secret_aad(name))?;
        let _turn = self.sqlite_turn().await;
        on!(self, ex => sqlx::query("INSERT INTO server_secrets (name, ciphertext) VALUES ($1, $2)")
            .bind(name)
            .bind(ct)
            .execute(ex).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The names of the server secrets stored (none: no server was initialised here).
    pub async fn server_secret_names(&self) -> Result<std::vec::IntoIter<String>, StoreError> {
        let names: Vec<String> =
            on!(self, ex => sqlx::query_scalar("SELECT name FROM server_secrets ORDER BY name").fetch_all(ex).await)?;
        Ok(names.into_iter())
    }

    pub async fn server_secret(&self, root: &SymmetricKey, name: &str) -> Result<SecretBytes, StoreError> {
        self.server_secret_opt(root, name)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("server secret {name} is missing")))
    }

    pub async fn server_secret_opt(&self, root: &SymmetricKey, name: &str) -> Result<Option<SecretBytes>, StoreError> {
        let ct: Option<Vec<u8>> = on!(self, ex => sqlx::query_scalar("SELECT ciphertext FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(ex).await)?;
        ct.map(|ct| root.open(&ct, &secret_aad(name)).map_err(Into::into)).transpose()
    }

    // ---- users and enrolment ----
}
