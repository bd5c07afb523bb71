//! A device's whole identity as one line (`pcid1-` and base64 of JSON): the configuration it
//! pins and its two private keys, for pipelines that keep nothing on disk. The line is as
//! secret as the keys; it is only ever held in `SecretString`s.

use base64::Engine;
use portcullis_crypto::SecretString;
use portcullis_crypto::identity::{SealingIdentity, SigningIdentity};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{ClientError, DeviceConfig};

/// The environment variable a pipeline's job gets the line in.
pub const ENV: &str = "PORTCULLIS_IDENTITY";
const PREFIX: &str = "pcid1-";

#[derive(Serialize, Deserialize)]
struct Identity {
    config: DeviceConfig,
    signing_key: String,
    sealing_key: String,
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.signing_key.zeroize();
        self.sealing_key.zeroize();
    }
}

pub fn encode(
    config: &DeviceConfig,
    signing: &SigningIdentity,
    sealing: &SealingIdentity,
) -> Result<SecretString, ClientError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let identity = Identity {
        config: config.clone(),
        signing_key: b64.encode(signing.to_secret_bytes().expose_secret()),
        sealing_key: b64.encode(sealing.to_secret_bytes().expose_secret()),
    };
    let mut json = serde_json::to_vec(&identity).map_err(|e| ClientError::Local(e.to_string()))?;
    let line = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&json));
    json.zeroize();
    Ok(SecretString::from(line))
}

pub fn decode(line: &str) -> Result<(DeviceConfig, SigningIdentity, SealingIdentity), ClientError> {
    let malformed = || ClientError::Input(format!("{ENV} is not a device identity (portcullis enroll --identity-out)"));
    let body = line.trim().strip_prefix(PREFIX).ok_or_else(malformed)?;
    let mut json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed())?;
    let parsed: Result<Identity, _> = serde_json::from_slice(&json);
    json.zeroize();
    let identity = parsed.map_err(|_| malformed())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut signing = b64.decode(&identity.signing_key).map_err(|_| malformed())?;
    let mut sealing = b64.decode(&identity.sealing_key).map_err(|_| malformed())?;
    let keys = (SigningIdentity::from_secret_bytes(&signing), SealingIdentity::from_secret_bytes(&sealing));
    signing.zeroize();
    sealing.zeroize();
    match keys {
        (Ok(signing), Ok(sealing)) => Ok((identity.config.clone(), signing, sealing)),
        _ => Err(malformed()),
    }
}
