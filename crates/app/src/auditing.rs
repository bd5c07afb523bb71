//! The auditor's verification tools in the window: a session's evidence checked here, offline,
//! against the server key this device pinned at enrolment; the bundle exported for anyone to
//! check; the alarms of the audit logs.

use std::path::PathBuf;

use crate::{AlarmView, AppCore, AppError, BundleCheckView};

impl AppCore {
    /// Fetches the session's bundle and checks it here: every record's inclusion proof under
    /// the gateway's signed checkpoint, countersigned by the server this device enrolled with.
    pub async fn verify_session(&self, id: &str) -> Result<BundleCheckView, AppError> {
        let device = self.device().await?;
        let bundle = device.api().session_bundle(id).await?;
        let bytes = serde_json::to_vec(&bundle).map_err(|e| AppError::internal(e.to_string()))?;
        let pinned = device.config().server.sign_public_key.clone();
        Ok(match portcullis_tlog::bundle::verify_bundle(&bytes, Some(&pinned)) {
            Ok(report) => BundleCheckView {
                verified: true,
                records: report.records as u32,
                log_size: report.log_size,
                complete: report.incomplete.is_none(),
                detail: match report.incomplete {
                    None => format!(
                        "{} records of {}'s log of {}, signed by the gateway and countersigned by the server; \
                         the session is complete",
                        report.records, report.writer_name, report.log_size
                    ),
                    Some(why) => format!(
                        "{} records of {}'s log of {}, signed and countersigned; not complete: {why}",
                        report.records, report.writer_name, report.log_size
                    ),
                },
            },
            Err(e) => BundleCheckView {
                verified: false,
                records: bundle.records.len() as u32,
                log_size: 0,
                complete: false,
                detail: format!("does not verify: {e}"),
            },
        })
    }

    /// Writes the session's bundle to the Downloads folder (or the app's exports folder);
    /// returns the file's path. Check it anywhere with `portcullis audit verify --bundle FILE`.
    pub async fn export_bundle(&self, id: &str) -> Result<String, AppError> {
        let bundle = self.device().await?.api().session_bundle(id).await?;
        let dir = dirs::download_dir().filter(|d| d.is_dir()).unwrap_or_else(|| self.dir.join("exports"));
        std::fs::create_dir_all(&dir).map_err(|e| AppError::internal(format!("{}: {e}", dir.display())))?;
        let safe: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let path: PathBuf = dir.join(format!("portcullis-session-{safe}.bundle.json"));
        let bytes = serde_json::to_vec_pretty(&bundle).map_err(|e| AppError::internal(e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| AppError::internal(format!("{}: {e}", path.display())))?;
        Ok(path.display().to_string())
    }

    /// Gaps, forks, rollbacks, refused uploads and lost records, newest first.
    pub async fn audit_alarms(&self) -> Result<Vec<AlarmView>, AppError> {
        let alarms = self.device().await?.api().alarms().await?;
        Ok(alarms
            .into_iter()
            .map(|a| {
                let text = |k: &str| a.detail.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                AlarmView {
                    id: a.id,
                    at: a.at,
                    kind: a.kind.clone(),
                    gateway: text("gateway"),
                    index: a.detail.get("index").and_then(|v| v.as_u64()),
                    message: text("message"),
                }
            })
            .collect())
    }
}
