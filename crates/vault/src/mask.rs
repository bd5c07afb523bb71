//! Masking secret values in a process's output (`portcullis run`).
//!
//! [`MaskSet::new`] turns each value into every form it commonly appears in: raw; base64 in the
//! standard and URL-safe alphabets, with and without padding, and the part of it that stays the
//! same inside a longer base64 string at each of the three byte alignments (so a value encoded
//! with a prefix or suffix is still caught, which GitHub Actions misses: actions/runner#291);
//! percent-encoded (upper- and lowercase hex); JSON-escaped (as serde writes it, and ASCII-only
//! as Python writes it); hex; and, for a value of several lines, each line (actions/runner#161).
//! Values shorter than [`MIN_MASKED_LEN`] bytes are not masked (they would blank ordinary words:
//! actions/runner#326) and come back as warnings.
//!
//! A [`Masker`] masks one stream. Matching is leftmost-longest over all patterns at once
//! (aho-corasick): where one value's form contains another's, the longer is masked whole. A
//! write may end inside an occurrence, so the masker holds back the end of its input — only the
//! bytes that could still begin one (never more than the longest pattern minus one byte) —
//! until the next write, the end of the stream, or a line break decides it. No timer releases
//! held bytes: a timer would let a slow writer print a secret a byte at a time; what is held is
//! always a strict prefix of a pattern, and no pattern spans a line break.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What replaces an occurrence.
pub const REPLACEMENT: &[u8] = b"***";
/// Shorter values (and lines of a value) are not masked; see the module's notes.
pub const MIN_MASKED_LEN: usize = 6;

/// The patterns of a set of values, compiled once, shared by the maskers of every stream.
pub struct MaskSet {
    matcher: Option<AhoCorasick>,
    /// The patterns, sorted, for the "could this tail begin an occurrence?" test.
    sorted: Vec<Vec<u8>>,
    /// Whether some pattern begins with this byte (most bytes of most output do not).
    first_bytes: [bool; 256],
    longest: usize,
    warnings: Vec<String>,
}

impl std::fmt::Debug for MaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskSet({} patterns: <secret>)", self.sorted.len())
    }
}

/// Bytes that percent-encoding leaves alone (RFC 3986 unreserved).
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The part of base64(`lead` bytes ++ `value` ++ anything) that depends on `value` alone.
fn base64_core(engine: &base64::engine::GeneralPurpose, lead: usize, value: &[u8]) -> Vec<u8> {
    let mut input = vec![0u8; lead];
    input.extend_from_slice(value);
    let encoded = engine.encode(&input).into_bytes();
    let start = (8 * lead).div_ceil(6);
    let end = (8 * (lead + value.len())) / 6;
    encoded.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
}

/// `text` JSON-escaped without the quotes, as serde_json writes it, and with every non-ASCII
/// character as `\uXXXX` (Python's `json.dumps` default).
fn json_forms(text: &str) -> [Vec<u8>; 2] {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    let plain = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_string();
    let mut ascii = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    [plain.into_bytes(), ascii.into_bytes()]
}

/// Every form of `value` that is masked (before the length filter).
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let multiline = value.contains(&b'\n');
    if multiline {
        for line in value.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.push(line.to_vec());
            if let Ok(text) = std::str::from_utf8(line) {
                out.extend(json_forms(text));
            }
        }
    } else {
        out.push(value.to_vec());
    }
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(value).into_bytes());
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(value).into_bytes());
        for lead in 0..3 {
            out.push(base64_core(engine, lead, value));
        }
    }
    let percent = percent_encoding::percent_encode(value, UNRESERVED).to_string();
    out.push(lowercase_escapes(&percent).into_bytes());
    out.push(percent.into_bytes());
    if let Ok(text) = std::str::from_utf8(value) {
        out.extend(json_forms(text));
    }
    out.push(hex::encode(value).into_bytes());
    out.push(hex::encode_upper(value).into_bytes());
    out
}

/// `%2F` → `%2f`, leaving the unescaped characters as they are.
fn lowercase_escapes(percent: &str) -> String {
    let mut out = String::with_capacity(percent.len());
    let mut after_percent = 0;
    for c in percent.chars() {
        if after_percent > 0 {
            out.push(c.to_ascii_lowercase());
            after_percent -= 1;
        } else {
            out.push(c);
            if c == '%' {
                after_percent = 2;
            }
        }
    }
    out
}

impl MaskSet {
    /// The masks of `values` (label, bytes); a label names the value in warnings.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> MaskSet {
        let mut patterns = Vec::new();
        let mut warnings = Vec::new();
        for (label, value) in values {
            if value.len() < MIN_MASKED_LEN {
                warnings.push(format!(
                    "{label} is shorter than {MIN_MASKED_LEN} characters: it is not masked in the output"
                ));
                continue;
            }
            patterns.extend(forms(value).into_iter().filter(|p| p.len() >= MIN_MASKED_LEN));
        }
        patterns.sort();
        patterns.dedup();
        let mut first_bytes = [false; 256];
        for p in &patterns {
            first_bytes[p[0] as usize] = true;
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let matcher = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok()
        };
        MaskSet { matcher, sorted: patterns, first_bytes, longest, warnings }
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The longest pattern: a masker holds back at most one byte less.
    pub fn longest(&self) -> usize {
        self.longest
    }

    pub fn masker(&self) -> Masker<'_> {
        Masker { set: self, pending: Vec::new() }
    }

    /// `data` masked in one go (what a stream of it masks to, however it is split).
    pub fn mask_all(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut masker = self.masker();
        masker.push(data, &mut out);
        masker.finish(&mut out);
        out
    }

    /// Whether `tail` is a strict prefix of some pattern (it could still grow into one).
    fn begins_pattern(&self, tail: &[u8]) -> bool {
        let at = self.sorted.partition_point(|p| p.as_slice() < tail);
        self.sorted[at..].iter().take(2).any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// Where the undecided end of `buf` begins: the first position whose rest could still grow
    /// into an occurrence.
    fn undecided_from(&self, buf: &[u8]) -> usize {
        let from = buf.len().saturating_sub(self.longest.saturating_sub(1));
        let from = buf[from..].iter().rposition(|b| *b == b'\n').map_or(from, |nl| from + nl + 1);
        (from..buf.len())
            .find(|&i| self.first_bytes[buf[i] as usize] && self.begins_pattern(&buf[i..]))
            .unwrap_or(buf.len())
    }
}

/// Masks one output stream: feed it what the process wrote, write out what it gives back.
pub struct Masker<'a> {
    set: &'a MaskSet,
    pending: Vec<u8>,
}

impl Masker<'_> {
    /// Masks `input`, appending to `out` everything that is decided; the rest is held.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.pending.is_empty() && self.set.matcher.is_none() {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        self.drain(false, out);
    }

    /// The stream ended: everything held goes out (masked where it is an occurrence).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.drain(true, out);
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    fn drain(&mut self, all: bool, out: &mut Vec<u8>) {
        let buf = &self.pending;
        let Some(matcher) = &self.set.matcher else {
            out.extend_from_slice(buf);
            self.pending.clear();
            return;
        };
        let undecided = if all { buf.len() } else { self.set.undecided_from(buf) };
        let mut pos = 0;
        for m in matcher.find_iter(buf) {
            if m.start() >= undecided {
                break;
            }
            out.extend_from_slice(&buf[pos..m.start()]);
            out.extend_from_slice(REPLACEMENT);
            pos = m.end();
        }
        let decided = undecided.max(pos);
        out.extend_from_slice(&buf[pos..decided]);
        self.pending.drain(..decided);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crypto::{OsRng, RngCore};

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDh3x9aZ2pQ\n-----END OPENSSH PRIVATE KEY-----\n";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn every_form_of_a_value_is_masked() {
        let value = "s3cr3t+/value?&=é";
        let set = MaskSet::new([("TOKEN", value.as_bytes())]);
        let b64 = |e: &base64::engine::GeneralPurpose, v: &[u8]| e.encode(v);
        let cases: Vec<(&str, String)> = vec![
            ("raw", format!("token={value};")),
            ("base64", format!("x {} y", b64(&STANDARD, value.as_bytes()))),
            ("base64 url, no padding", b64(&URL_SAFE_NO_PAD, value.as_bytes())),
            ("base64 with a suffix", b64(&STANDARD, format!("{value}:more-data-after").as_bytes())),
            ("base64 with a 1-byte prefix", b64(&STANDARD, format!("a{value}").as_bytes())),
            ("base64 with a 2-byte prefix and suffix", b64(&STANDARD, format!("ab{value}zz").as_bytes())),
            ("basic auth", format!("Authorization: Basic {}", b64(&STANDARD, format!("user:{value}").as_bytes()))),
            ("percent", percent_encoding::percent_encode(value.as_bytes(), UNRESERVED).to_string()),
            (
                "percent, lowercase",
                percent_encoding::percent_encode(value.as_bytes(), UNRESERVED).to_string().to_lowercase(),
            ),
            ("json", serde_json::json!({ "v": value }).to_string()),
            ("json, ascii", "s3cr3t+/value?&=\\u00e9".to_string()),
            ("hex", hex::encode(value)),
            ("HEX", hex::encode_upper(value)),
        ];
        for (what, output) in cases {
            let masked = set.mask_all(output.as_bytes());
            let text = String::from_utf8_lossy(&masked);
            assert!(text.contains("***"), "{what}: {text}");
            assert!(!text.contains("s3cr3t"), "{what}: {text}");
            for form in forms(value.as_bytes()).iter().filter(|f| f.len() >= MIN_MASKED_LEN) {
                assert!(!contains(&masked, form), "{what}: a form survives in {text}");
            }
        }
    }

    #[test]
    fn each_line_of_a_multiline_value_and_its_encodings_are_masked() {
        let set = MaskSet::new([("KEY", KEY.as_bytes())]);
        let json = serde_json::json!({ "key": KEY }).to_string();
        let output = format!("cat:\n{KEY}json: {json}\nb64: {}\n", STANDARD.encode(KEY));
        let masked = String::from_utf8(set.mask_all(output.as_bytes())).unwrap();
        for secret_part in ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "QyNTUxOQAAACDh3x9aZ2pQ"] {
            assert!(!masked.contains(secret_part), "{masked}");
        }
        assert!(!masked.contains(&STANDARD.encode(KEY)[4..40]), "{masked}");
        assert!(masked.starts_with("cat:\n***\n***\n"), "{masked}");
    }

    #[test]
    fn occurrences_split_across_writes_are_masked_and_nothing_else_is_held() {
        let value = b"(a+)*[^x]$\\d{2}|.?".as_slice(); // regex metacharacters are plain bytes here
        let set = MaskSet::new([("V", value)]);
        let output =
            [b"before ".as_slice(), value, b" middle ", STANDARD.encode(value).as_bytes(), b" after\n"].concat();
        let whole = set.mask_all(&output);
        assert_eq!(whole, b"before *** middle *** after\n");
        // Byte by byte, and at random split points: the same output, never a form leaked.
        let mut masker = set.masker();
        let mut out = Vec::new();
        for b in &output {
            masker.push(std::slice::from_ref(b), &mut out);
            assert!(masker.held() < set.longest());
        }
        masker.finish(&mut out);
        assert_eq!(out, whole);
        for _ in 0..200 {
            let mut masker = set.masker();
            let mut out = Vec::new();
            let mut rest = output.as_slice();
            while !rest.is_empty() {
                let n = 1 + (OsRng.next_u32() as usize % rest.len().min(9));
                masker.push(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            masker.finish(&mut out);
            assert_eq!(out, whole);
        }
        // Output that cannot begin an occurrence is never held, and a line break decides.
        let mut masker = set.masker();
        let mut out = Vec::new();
        masker.push(b"progress 10%\n", &mut out);
        assert_eq!(masker.held(), 0);
        masker.push(b"(a+)*", &mut out);
        assert_eq!(masker.held(), 5);
        masker.push(b"\n", &mut out);
        assert_eq!(masker.held(), 0);
        assert_eq!(out, b"progress 10%\n(a+)*\n");
    }

    #[test]
    fn the_longest_match_wins_and_short_values_are_warned_about() {
        let set = MaskSet::new([("A", b"abcdefgh".as_slice()), ("B", b"abcdefgh-ijkl"), ("PIN", b"1234")]);
        assert_eq!(set.mask_all(b"[abcdefgh-ijkl] [abcdefgh]"), b"[***] [***]");
        assert_eq!(set.warnings().len(), 1);
        assert!(set.warnings()[0].starts_with("PIN is shorter than 6"));
        assert_eq!(set.mask_all(b"pin 1234"), b"pin 1234");
        let none = MaskSet::new([]);
        assert_eq!(none.mask_all(b"plain"), b"plain");
    }
}
