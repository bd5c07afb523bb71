//! Reading other vaults' exports: Portcullis CSV, Bitwarden's unencrypted JSON and KeePassXC's
//! CSV. [`parse`] reads the whole file and says, for every row or item, what it became, why it
//! was skipped (a kind we do not keep: a Bitwarden card), or what is wrong with it (a broken
//! row, a duplicate name, a control character, a value its kind refuses). An import goes ahead
//! only without problems, all of it or nothing; no message ever quotes a value.
//!
//! Portcullis CSV (UTF-8, a header row): `name,type` and any of `env,folder,tags,description,
//! owner,revealable,expires`; every other column is a field of the row's type (`password`,
//! `username`, `token`, `host`, ...; see `portcullis secret add --help`), left empty when not
//! given. `tags` are separated by `;`, `revealable` is `true` or `false`, `expires` is RFC 3339
//! or Unix seconds. A field that spans lines is quoted, as CSV quotes it.

use std::collections::BTreeMap;

use crate::wire::SecretMeta;
use crate::{SecretBytes, SecretKind, SecretValue};

/// Which export a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Bitwarden,
    Keepassxc,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "bitwarden" => Ok(Format::Bitwarden),
            "keepassxc" => Ok(Format::Keepassxc),
            _ => Err(format!("unknown format {s:?}: csv, bitwarden (unencrypted JSON) or keepassxc (CSV)")),
        }
    }
}

/// A secret to add.
pub struct Item {
    /// Where it came from: `row 4`, `item 7`.
    pub from: String,
    pub name: String,
    pub kind: SecretKind,
    pub meta: SecretMeta,
    pub fields: Vec<(String, SecretBytes)>,
}

/// Something in the file that was not turned into a secret, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub at: String,
    pub why: String,
}

/// What a file holds.
#[derive(Default)]
pub struct Parsed {
    pub items: Vec<Item>,
    /// Left out on purpose (a kind the vault does not keep); they do not stop the import.
    pub skipped: Vec<Note>,
    /// Wrong; any one stops the whole import.
    pub problems: Vec<Note>,
}

fn note(at: impl Into<String>, why: impl Into<String>) -> Note {
    Note { at: at.into(), why: why.into() }
}

/// A name the vault accepts from a title people wrote: lowercase, words joined by `-`.
pub fn slug(title: &str) -> Option<String> {
    let mut out = String::new();
    for c in title.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(64).collect();
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// A folder path from a group path (`Root/Servers/Prod DB` → `servers/prod-db`).
fn folder_of(path: &str, drop_root: bool) -> String {
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
    if drop_root && parts.first().is_some_and(|p| p.eq_ignore_ascii_case("root")) {
        parts.remove(0);
    }
    parts
        .iter()
        .filter_map(|p| slug(p))
        .map(|p| p.chars().take(32).collect::<String>())
        .take(8)
        .collect::<Vec<_>>()
        .join("/")
}

/// The file as text: UTF-8 (a byte-order mark is dropped), else one problem saying where.
fn text_of(bytes: &[u8], parsed: &mut Parsed) -> Option<String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_string()),
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            parsed.problems.push(note(
                format!("line {line}"),
                format!("the file is not UTF-8 (byte {}); export it again as UTF-8", e.valid_up_to() + 1),
            ));
            None
        }
    }
}

fn is_truthy(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => Ok(false),
        "true" | "yes" | "1" => Ok(true),
        other => Err(format!("revealable is true or false, not {other:?}")),
    }
}

/// Checks what an item will be, as the server would (kind, value, metadata), and adds it.
fn push_item(parsed: &mut Parsed, item: Item) {
    if let Err(e) = portcullis_proto::check_name("secret", &item.name) {
        parsed.problems.push(note(&item.from, e));
        return;
    }
    let printable = |what: &str, text: &str| -> Result<(), String> {
        if text.chars().any(char::is_control) {
            Err(format!("the {what} contains a control character"))
        } else {
            Ok(())
        }
    };
    for (what, text) in [("description", &item.meta.description), ("owner", &item.meta.owner)] {
        if let Err(e) = printable(what, text) {
            parsed.problems.push(note(format!("{} ({})", item.from, item.name), e));
            return;
        }
    }
    let copy: Vec<(String, SecretBytes)> = item.fields.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    if let Err(e) = SecretValue::parse(item.kind, copy) {
        parsed.problems.push(note(format!("{} ({})", item.from, item.name), e.to_string()));
        return;
    }
    parsed.items.push(item);
}

/// Reads `bytes` as `format`.
pub fn parse(format: Format, bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let Some(text) = text_of(bytes, &mut parsed) else { return parsed };
    match format {
        Format::Csv => portcullis_csv(&text, &mut parsed),
        Format::Keepassxc => keepassxc_csv(&text, &mut parsed),
        Format::Bitwarden => bitwarden_json(&text, &mut parsed),
    }
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for item in &parsed.items {
        if let Some(earlier) = first.get(&item.name) {
            duplicates.push(note(&item.from, format!("the name {} is taken by {earlier} too", item.name)));
        } else {
            first.insert(item.name.clone(), item.from.clone());
        }
    }
    parsed.problems.extend(duplicates);
    parsed
}

/// A CSV file's lowercased header and its rows with their line numbers.
type Table = (Vec<String>, Vec<(usize, csv::StringRecord)>);

fn records(text: &str, parsed: &mut Parsed) -> Option<Table> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            parsed.problems.push(note("line 1", format!("the header row does not parse: {e}")));
            return None;
        }
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        match record {
            Ok(r) => rows.push((i + 2, r)),
            Err(e) => {
                let line = e.position().map_or(i + 2, |p| p.line() as usize);
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("the row has {len} columns; the header has {expected_len}")
                    }
                    _ => "the row does not parse as CSV".to_string(),
                };
                parsed.problems.push(note(format!("line {line}"), why));
            }
        }
    }
    Some((header, rows))
}

const META_COLUMNS: [&str; 9] =
    ["name", "type", "env", "folder", "tags", "description", "owner", "revealable", "expires"];

fn portcullis_csv(text: &str, parsed: &mut Parsed) {
    let Some((header, rows)) = records(text, parsed) else { return };
    for needed in ["name", "type"] {
        if !header.iter().any(|h| h == needed) {
            parsed.problems.push(note("line 1", format!("the header has no {needed} column")));
            return;
        }
    }
    for (line, row) in rows {
        let cell = |column: &str| header.iter().position(|h| h == column).and_then(|i| row.get(i)).unwrap_or("");
        let at = format!("line {line}");
        let kind = match SecretKind::parse(cell("type").trim()) {
            Ok(k) => k,
            Err(e) => {
                parsed.problems.push(note(at, e));
                continue;
            }
        };
        let revealable = match is_truthy(cell("revealable")) {
            Ok(r) => r,
            Err(e) => {
                parsed.problems.push(note(at, e));
                continue;
            }
        };
        let expires_at = match cell("expires").trim() {
            "" => None,
            text => match crate::value::parse_time(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    parsed.problems.push(note(at, e.to_string()));
                    continue;
                }
            },
        };
        let mut fields = Vec::new();
        let mut unknown = None;
        for (i, column) in header.iter().enumerate() {
            if META_COLUMNS.contains(&column.as_str()) {
                continue;
            }
            let value = row.get(i).unwrap_or("");
            if value.is_empty() {
                continue;
            }
            if kind.field(column).is_none() {
                unknown = Some(column.clone());
                break;
            }
            fields.push((column.clone(), SecretBytes::from(value.as_bytes().to_vec())));
        }
        if let Some(column) = unknown {
            parsed.problems.push(note(at, format!("a {kind} secret has no field {column:?}")));
            continue;
        }
        let meta = SecretMeta {
            environment: cell("env").trim().to_string(),
            folder: cell("folder").trim().to_string(),
            tags: cell("tags").split(';').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect(),
            description: cell("description").trim().to_string(),
            owner: cell("owner").trim().to_string(),
            expires_at,
            revealable,
            versions_kept: None,
            target: None,
        };
        push_item(parsed, Item { from: at, name: cell("name").trim().to_string(), kind, meta, fields });
    }
}

fn keepassxc_csv(text: &str, parsed: &mut Parsed) {
    let Some((header, rows)) = records(text, parsed) else { return };
    for needed in ["title", "password"] {
        if !header.iter().any(|h| h == needed) {
            parsed.problems.push(note(
                "line 1",
                format!("the header has no {needed} column: is this KeePassXC's CSV export (Database > Export > CSV)?"),
            ));
            return;
        }
    }
    for (line, row) in rows {
        let cell = |column: &str| header.iter().position(|h| h == column).and_then(|i| row.get(i)).unwrap_or("");
        let at = format!("line {line}");
        let title = cell("title");
        if cell("password").is_empty() {
            parsed.skipped.push(note(at, format!("{title:?} has no password")));
            continue;
        }
        let Some(name) = slug(title) else {
            parsed.problems.push(note(at, format!("the title {title:?} gives no usable name")));
            continue;
        };
        let mut fields = vec![("password".to_string(), SecretBytes::from(cell("password").as_bytes().to_vec()))];
        for (column, field) in [("username", "username"), ("url", "url")] {
            if !cell(column).is_empty() {
                fields.push((field.into(), SecretBytes::from(cell(column).as_bytes().to_vec())));
            }
        }
        if !cell("notes").is_empty() {
            parsed.skipped.push(note(&at, format!("the notes of {name} (they may hold secrets: add them as a note)")));
        }
        let meta = SecretMeta { folder: folder_of(cell("group"), true), revealable: true, ..SecretMeta::default() };
        push_item(parsed, Item { from: at, name, kind: SecretKind::Password, meta, fields });
    }
}

fn bitwarden_json(text: &str, parsed: &mut Parsed) {
    let json: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            parsed.problems.push(note(format!("line {}", e.line()), "the file is not JSON"));
            return;
        }
    };
    if json["encrypted"].as_bool() == Some(true) {
        parsed.problems.push(note("file", "this is an encrypted export; export the vault as unencrypted JSON"));
        return;
    }
    let Some(items) = json["items"].as_array() else {
        parsed.problems.push(note("file", "no \"items\": is this Bitwarden's JSON export?"));
        return;
    };
    let folders: BTreeMap<&str, &str> = json["folders"]
        .as_array()
        .map(|fs| fs.iter().filter_map(|f| Some((f["id"].as_str()?, f["name"].as_str()?))).collect())
        .unwrap_or_default();
    let text_of =
        |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(|s| SecretBytes::from(s.as_bytes().to_vec()));
    for (i, item) in items.iter().enumerate() {
        let at = format!("item {}", i + 1);
        let title = item["name"].as_str().unwrap_or_default();
        let Some(name) = slug(title) else {
            parsed.problems.push(note(at, format!("the name {title:?} gives no usable name")));
            continue;
        };
        let folder = item["folderId"].as_str().and_then(|id| folders.get(id)).map(|f| folder_of(f, false));
        let (kind, fields) = match item["type"].as_i64() {
            Some(1) => {
                let login = &item["login"];
                let Some(password) = text_of(&login["password"]) else {
                    parsed.skipped.push(note(at, format!("login {title:?} has no password")));
                    continue;
                };
                let mut fields = vec![("password".to_string(), password)];
                if let Some(user) = text_of(&login["username"]) {
                    fields.push(("username".into(), user));
                }
                if let Some(uri) = login["uris"].as_array().and_then(|u| u.first()).and_then(|u| text_of(&u["uri"])) {
                    fields.push(("url".into(), uri));
                }
                (SecretKind::Password, fields)
            }
            Some(2) => match text_of(&item["notes"]) {
                Some(notes) => (SecretKind::Note, vec![("text".to_string(), notes)]),
                None => {
                    parsed.skipped.push(note(at, format!("note {title:?} is empty")));
                    continue;
                }
            },
            Some(5) => match text_of(&item["sshKey"]["privateKey"]) {
                Some(key) => (SecretKind::SshKey, vec![("private_key".to_string(), key)]),
                None => {
                    parsed.skipped.push(note(at, format!("SSH key {title:?} has no private key")));
                    continue;
                }
            },
            Some(3) => {
                parsed.skipped.push(note(at, format!("{title:?} is a card: the vault keeps no cards")));
                continue;
            }
            Some(4) => {
                parsed.skipped.push(note(at, format!("{title:?} is an identity: the vault keeps no identities")));
                continue;
            }
            _ => {
                parsed.problems.push(note(at, format!("{name} has no item type Bitwarden exports")));
                continue;
            }
        };
        if item["type"].as_i64() != Some(2) && text_of(&item["notes"]).is_some() {
            parsed.skipped.push(note(&at, format!("the notes of {name} (they may hold secrets: add them as a note)")));
        }
        let meta = SecretMeta { folder: folder.unwrap_or_default(), revealable: true, ..SecretMeta::default() };
        push_item(parsed, Item { from: at, name, kind, meta, fields });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(p: &Parsed) -> Vec<String> {
        p.problems.iter().map(|n| format!("{}: {}", n.at, n.why)).collect()
    }

    #[test]
    fn portcullis_csv_reads_every_kind_and_reports_each_bad_row() {
        let good = "name,type,env,folder,tags,revealable,password,username,token,text\n\
                    db,password,prod,billing,pci;db,true,s3cret,app,,\n\
                    gh,api-token,,ci,,false,,,ghp_x,\n\
                    runbook,note,,,,,,,,\"line one\nline two\"\n";
        let p = parse(Format::Csv, good.as_bytes());
        assert!(p.problems.is_empty(), "{:?}", problems(&p));
        let names: Vec<(&str, SecretKind)> = p.items.iter().map(|i| (i.name.as_str(), i.kind)).collect();
        assert_eq!(
            names,
            vec![("db", SecretKind::Password), ("gh", SecretKind::ApiToken), ("runbook", SecretKind::Note)]
        );
        assert_eq!(p.items[0].meta.tags, vec!["pci".to_string(), "db".to_string()]);
        assert!(p.items[0].meta.revealable && !p.items[1].meta.revealable);

        let bad = "name,type,password,token\n\
                   db,password,pw-first,\n\
                   db,password,pw-second,\n\
                   x,password\n\
                   y,passwd,pw-third,\n\
                   z,password,bell\x07,\n\
                   w,password,,tok-fourth\n";
        let p = parse(Format::Csv, bad.as_bytes());
        let said = problems(&p).join("\n");
        for why in [
            "line 3: the name db is taken by line 2 too",
            "line 4: the row has 2 columns; the header has 4",
            "line 5: unknown secret type \"passwd\"",
            "line 6 (z): the password contains a line break or control character",
            "line 7: a password secret has no field \"token\"",
        ] {
            assert!(said.contains(why), "{why:?} not in:\n{said}");
        }
        assert!(
            !said.contains("pw-") && !said.contains("bell") && !said.contains("tok-"),
            "a value was quoted: {said}"
        );
        let latin1 = b"name,type,password\ncaf\xe9,password,x\n";
        let p = parse(Format::Csv, latin1);
        assert_eq!(problems(&p), vec!["line 2: the file is not UTF-8 (byte 23); export it again as UTF-8".to_string()]);
    }

    #[test]
    fn keepassxc_and_bitwarden_exports_map_to_kinds_and_skip_what_the_vault_does_not_keep() {
        let kp = "\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\",\"TOTP\",\"Icon\",\"Last Modified\",\"Created\"\n\
                  \"Root/Servers/Prod DB\",\"Billing DB (primary)\",\"app\",\"pw1\",\"https://db\",\"\",\"\",\"0\",\"\",\"\"\n\
                  \"Root\",\"Empty\",\"x\",\"\",\"\",\"\",\"\",\"0\",\"\",\"\"\n\
                  \"Root\",\"Router\",\"admin\",\"pw2\",\"\",\"the PIN is 1234\",\"\",\"0\",\"\",\"\"\n";
        let p = parse(Format::Keepassxc, kp.as_bytes());
        assert!(p.problems.is_empty(), "{:?}", problems(&p));
        assert_eq!(p.items[0].name, "billing-db-primary");
        assert_eq!(p.items[0].meta.folder, "servers/prod-db");
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert!(!format!("{:?}", p.skipped).contains("1234"));

        let bw = r#"{"encrypted": false,
            "folders": [{"id": "f1", "name": "Infra/Cloud"}],
            "items": [
              {"type": 1, "name": "AWS console", "folderId": "f1", "login": {"username": "root", "password": "pw", "uris": [{"uri": "https://aws"}]}},
              {"type": 2, "name": "Recovery codes", "notes": "a b c"},
              {"type": 3, "name": "Visa", "card": {}},
              {"type": 5, "name": "deploy key", "sshKey": {"privateKey": "not a key"}}
            ]}"#;
        let p = parse(Format::Bitwarden, bw.as_bytes());
        assert_eq!(p.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["aws-console", "recovery-codes"]);
        assert_eq!(p.items[0].meta.folder, "infra/cloud");
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(problems(&p), vec!["item 4 (deploy-key): the private key is not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)".to_string()]);
        let encrypted = parse(Format::Bitwarden, br#"{"encrypted": true, "items": []}"#);
        assert!(problems(&encrypted)[0].contains("unencrypted JSON"));
    }
}
