//! TLS certificates with their keys: the chain is parsed (x509-parser), its facts read from the
//! first certificate, and the private key is checked to be that certificate's (ring derives the
//! public half; a mismatch is refused before anything is stored).

use ring::signature::{self, KeyPair};
use serde::{Deserialize, Serialize};
use x509_parser::pem::Pem;
use x509_parser::prelude::{GeneralName, X509Certificate};

use crate::{SecretBytes, VaultError, invalid};

/// What a certificate says about itself: public, shown in lists and detail panes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFacts {
    pub subject: String,
    pub issuer: String,
    /// DNS names, IP addresses, e-mail addresses and URIs, in the certificate's order.
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the first certificate's DER, hex.
    pub sha256: String,
    /// Certificates in the chain (the first is the leaf).
    pub chain_length: usize,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
/// DER content of the two curve OIDs, for wrapping a SEC1 key into PKCS#8.
const DER_OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const DER_OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const DER_OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// The certificates of a PEM chain, in order; refuses text that holds none, or a broken one.
fn certificates(chain: &[u8]) -> Result<Vec<Pem>, VaultError> {
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(chain) {
        let block = block.map_err(|e| invalid(format!("the certificate is not valid PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            certs.push(block);
        }
    }
    if certs.is_empty() {
        return Err(invalid("no certificate found: give the chain as PEM (-----BEGIN CERTIFICATE-----)"));
    }
    for (i, pem) in certs.iter().enumerate() {
        pem.parse_x509().map_err(|e| invalid(format!("certificate {} of the chain does not parse: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// Splits a combined PEM file (chain and key together, as many servers keep them) into
/// (certificates, private key); `None` when it holds no certificate.
pub(crate) fn split_combined(pem: &[u8]) -> Option<(Vec<u8>, SecretBytes)> {
    let text = std::str::from_utf8(pem).ok()?;
    let mut certs = String::new();
    let mut key = String::new();
    let mut into_key = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            into_key = line.contains("PRIVATE KEY");
        }
        let out = if into_key { &mut key } else { &mut certs };
        out.push_str(line);
        out.push('\n');
    }
    if !certs.contains("-----BEGIN CERTIFICATE-----") || !key.contains("PRIVATE KEY") {
        use zeroize::Zeroize;
        key.zeroize();
        return None;
    }
    Some((certs.into_bytes(), SecretBytes::from(key.into_bytes())))
}

/// Checks a chain and its key and reads the facts of the first certificate.
pub(crate) fn check(chain: &[u8], private_key: &SecretBytes) -> Result<CertificateFacts, VaultError> {
    let certs = certificates(chain)?;
    let leaf_pem = &certs[0];
    let leaf = leaf_pem.parse_x509().map_err(|e| invalid(format!("the certificate does not parse: {e}")))?;
    check_key_matches(&leaf, private_key)?;
    Ok(facts(&leaf, &leaf_pem.contents, certs.len()))
}

fn facts(cert: &X509Certificate<'_>, der: &[u8], chain_length: usize) -> CertificateFacts {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_string()),
                GeneralName::RFC822Name(n) => names.push(format!("email:{n}")),
                GeneralName::URI(n) => names.push(format!("uri:{n}")),
                GeneralName::IPAddress(ip) => match <[u8; 4]>::try_from(*ip) {
                    Ok(v4) => names.push(std::net::Ipv4Addr::from(v4).to_string()),
                    Err(_) => {
                        if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                            names.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                },
                _ => {}
            }
        }
    }
    let printable = |s: String| s.chars().filter(|c| !c.is_control()).collect::<String>();
    CertificateFacts {
        subject: printable(cert.subject().to_string()),
        issuer: printable(cert.issuer().to_string()),
        names: names.into_iter().map(printable).collect(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: portcullis_crypto::sha256_hex(der),
        chain_length,
    }
}

/// The one private key block of `pem`, as PKCS#8 DER (a PKCS#1 RSA key stays PKCS#1; a SEC1 EC
/// key is wrapped), with its label.
fn private_key_der(pem: &SecretBytes, curve: Option<&str>) -> Result<(String, SecretBytes), VaultError> {
    let mut found = None;
    for block in Pem::iter_from_buffer(pem.expose_secret()) {
        let block = block.map_err(|_| invalid("the private key is not valid PEM"))?;
        let Pem { label, contents } = block;
        let contents = SecretBytes::from(contents);
        if label.contains("PRIVATE KEY") {
            if found.is_some() {
                return Err(invalid("more than one private key: give the certificate's key only"));
            }
            found = Some((label, contents));
        }
    }
    let (label, der) =
        found.ok_or_else(|| invalid("no private key found: give it as PEM (-----BEGIN PRIVATE KEY-----)"))?;
    match label.as_str() {
        "PRIVATE KEY" | "RSA PRIVATE KEY" => Ok((label, der)),
        "EC PRIVATE KEY" => {
            let oid = match curve {
                Some(OID_P256) => DER_OID_P256,
                Some(OID_P384) => DER_OID_P384,
                _ => return Err(invalid("the private key does not match the certificate")),
            };
            Ok(("PRIVATE KEY".into(), wrap_sec1(oid, der.expose_secret())))
        }
        "ENCRYPTED PRIVATE KEY" => {
            Err(invalid("the private key is passphrase-protected; add it decrypted (it is stored encrypted)"))
        }
        other => Err(invalid(format!("unsupported private key type {other:?}; use PKCS#8 (BEGIN PRIVATE KEY)"))),
    }
}

/// DER: a tag, its length, its content.
fn tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// PKCS#8 `PrivateKeyInfo { version 0, { id-ecPublicKey, curve }, OCTET STRING sec1 }` (RFC 5915
/// §1, RFC 5208), so ring, which reads PKCS#8 only, can derive the public key.
fn wrap_sec1(curve_oid: &[u8], sec1: &[u8]) -> SecretBytes {
    let mut algorithm = Vec::new();
    tlv(0x06, DER_OID_EC, &mut algorithm);
    tlv(0x06, curve_oid, &mut algorithm);
    let mut body = vec![0x02, 0x01, 0x00];
    tlv(0x30, &algorithm, &mut body);
    tlv(0x04, sec1, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    tlv(0x30, &body, &mut out);
    use zeroize::Zeroize;
    body.zeroize();
    SecretBytes::from(out)
}

fn check_key_matches(cert: &X509Certificate<'_>, private_key: &SecretBytes) -> Result<(), VaultError> {
    let spki = cert.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| x509_parser::der_parser::oid::Oid::try_from(p).ok())
        .map(|oid| oid.to_id_string());
    let (label, der) = private_key_der(private_key, curve.as_deref())?;
    let mismatch = || invalid("the private key does not match the certificate");
    let unreadable = || {
        invalid("the private key does not match the certificate (it does not parse as a key of the certificate's type)")
    };
    let public: Vec<u8> = match algorithm.as_str() {
        OID_ED25519 => signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.expose_secret())
            .map_err(|_| unreadable())?
            .public_key()
            .as_ref()
            .to_vec(),
        OID_EC => {
            let alg = match curve.as_deref() {
                Some(OID_P256) => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                Some(OID_P384) => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                _ => return Err(invalid("the certificate's curve is not supported (P-256 and P-384 are)")),
            };
            signature::EcdsaKeyPair::from_pkcs8(alg, der.expose_secret(), &ring::rand::SystemRandom::new())
                .map_err(|_| unreadable())?
                .public_key()
                .as_ref()
                .to_vec()
        }
        OID_RSA => {
            let pair = if label == "RSA PRIVATE KEY" {
                signature::RsaKeyPair::from_der(der.expose_secret())
            } else {
                signature::RsaKeyPair::from_pkcs8(der.expose_secret())
            };
            pair.map_err(|_| unreadable())?.public().as_ref().to_vec()
        }
        other => return Err(invalid(format!("the certificate's key algorithm {other} is not supported"))),
    };
    if public.as_slice() != spki.subject_public_key.data.as_ref() {
        return Err(mismatch());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["db.example.com".into(), "10.0.0.7".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "db.example.com");
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_chain_and_its_key_give_their_facts_and_a_foreign_key_is_refused() {
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let (cert, key) = pair(alg);
            let facts = check(cert.as_bytes(), &SecretBytes::from(key.clone().into_bytes())).unwrap();
            assert_eq!(facts.subject, "CN=db.example.com");
            assert_eq!(facts.names, vec!["db.example.com".to_string(), "10.0.0.7".to_string()]);
            assert!(facts.not_after > facts.not_before);
            assert_eq!(facts.chain_length, 1);
            let (_, other_key) = pair(alg);
            let refused = check(cert.as_bytes(), &SecretBytes::from(other_key.into_bytes())).unwrap_err();
            assert_eq!(refused, invalid("the private key does not match the certificate"), "{alg:?}");
            let combined = format!("{cert}{key}");
            let (chain, split_key) = split_combined(combined.as_bytes()).unwrap();
            assert!(check(&chain, &split_key).is_ok());
        }
    }

    // Made with openssl 3 (test keys, never used anywhere): a SEC1 EC key, an RSA key in
    // PKCS#1 and in PKCS#8, and self-signed certificates for them.
    const EC_SEC1: &[u8] = include_bytes!("testdata/ec-sec1.key");
    const EC_CERT: &[u8] = include_bytes!("testdata/ec.crt");
    const RSA_PKCS1: &[u8] = include_bytes!("testdata/rsa-pkcs1.key");
    const RSA_PKCS8: &[u8] = include_bytes!("testdata/rsa-pkcs8.key");
    const RSA_CERT: &[u8] = include_bytes!("testdata/rsa.crt");

    #[test]
    fn keys_as_openssl_writes_them_are_read() {
        for (cert, key, subject) in [
            (EC_CERT, EC_SEC1, "CN=ec.test"),
            (RSA_CERT, RSA_PKCS1, "CN=rsa.test"),
            (RSA_CERT, RSA_PKCS8, "CN=rsa.test"),
        ] {
            let facts = check(cert, &SecretBytes::from(key.to_vec())).unwrap();
            assert_eq!(facts.subject, subject);
        }
        let e = check(EC_CERT, &SecretBytes::from(RSA_PKCS8.to_vec())).unwrap_err();
        assert!(e.to_string().starts_with("the private key does not match the certificate"), "{e}");
    }

    #[test]
    fn malformed_input_is_refused_with_a_reason() {
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key = SecretBytes::from(key.into_bytes());
        let cases: &[(&[u8], &str)] = &[
            (b"", "no certificate found"),
            (b"hello", "no certificate found"),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
            (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not valid PEM"),
        ];
        for (chain, why) in cases {
            let e = check(chain, &key).unwrap_err().to_string();
            assert!(e.contains(why), "{e:?} should say {why:?}");
        }
        let no_key = check(cert.as_bytes(), &SecretBytes::from(b"not a key".to_vec())).unwrap_err();
        assert!(no_key.to_string().contains("no private key found"));
        let e = check(cert.as_bytes(), &SecretBytes::from(RSA_PKCS8.to_vec())).unwrap_err();
        assert!(e.to_string().starts_with("the private key does not match the certificate"), "{e}");
        let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec();
        let e = check(cert.as_bytes(), &SecretBytes::from(encrypted)).unwrap_err();
        assert!(e.to_string().contains("passphrase-protected"));
    }
}
