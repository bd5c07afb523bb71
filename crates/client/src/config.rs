use std::path::Path;

use portcullis_proto::{Role, ServerIdentity};
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// What a device remembers in clear: who it is and which server it pinned. No secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceConfig {
    pub server_url: String,
    pub server: ServerIdentity,
    pub user_id: String,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub device_id: String,
    pub device_name: String,
}

impl DeviceConfig {
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let bytes = std::fs::read(path).map_err(|e| ClientError::Local(format!("reading {}: {e}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Local(format!("{} is malformed: {e}", path.display())))
    }

    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ClientError::Local(e.to_string()))?;
        portcullis_keystore::write_private(path, &json)
            .map_err(|e| ClientError::Local(format!("writing {}: {e}", path.display())))
    }
}
