//! Device-signed API requests. Every call after enrolment carries these headers; the server
//! checks the signature against the device's enrolled Ed25519 key, the time against its clock
//! (± [`MAX_CLOCK_SKEW_SECS`]) and the nonce against the ones it has seen (no replay).

pub const HEADER_DEVICE: &str = "x-portcullis-device";
pub const HEADER_TIME: &str = "x-portcullis-time";
pub const HEADER_NONCE: &str = "x-portcullis-nonce";
pub const HEADER_SIGNATURE: &str = "x-portcullis-signature";

pub const MAX_CLOCK_SKEW_SECS: i64 = 120;

/// The bytes a device signs for one request.
pub fn request_signing_input(method: &str, path_and_query: &str, time: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "portcullis/v1/request\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        time,
        nonce,
        portcullis_crypto::sha256_hex(body)
    )
    .into_bytes()
}
