-- Grants (their revocation), targets (address, login, host key, credential, policy facts,
-- gateway) and enrolment codes are decided with: they carry a MAC like users and devices
-- (see crates/server/src/rows.rs). Existing rows are sealed in the start that applies this.
ALTER TABLE grants ADD COLUMN mac BLOB;
ALTER TABLE targets ADD COLUMN mac BLOB;
ALTER TABLE enrolment_codes ADD COLUMN mac BLOB;
-- Reviews (who approved or denied, with which step-up) and WebAuthn ceremony state too.
ALTER TABLE reviews ADD COLUMN mac BLOB;
ALTER TABLE webauthn_challenges ADD COLUMN mac BLOB;
