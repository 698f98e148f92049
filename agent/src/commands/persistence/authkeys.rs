//! `authorized_keys` lines as sshd reads them: `[options] keytype base64 [comment]`, where options
//! are comma-separated and may hold double-quoted values with spaces and `\"`.

use sha2::{Digest, Sha256};

/// One key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub line: usize,
    /// The options as written (`command="...",no-pty`).
    pub options: Option<String>,
    pub key_type: String,
    /// `SHA256:<base64>` as `ssh-keygen -l` prints it; `None` when the key is not valid base64.
    pub fingerprint: Option<String>,
    pub comment: Option<String>,
}

impl AuthorizedKey {
    /// One line for an analyst: type, fingerprint, comment and options.
    pub fn summary(&self) -> String {
        let mut s = self.key_type.clone();
        s.push(' ');
        s.push_str(
            self.fingerprint
                .as_deref()
                .unwrap_or("(key not valid base64)"),
        );
        if let Some(c) = &self.comment {
            s.push(' ');
            s.push_str(c);
        }
        if let Some(o) = &self.options {
            s.push_str(" [options: ");
            s.push_str(o);
            s.push(']');
        }
        s
    }
}

/// The keys of a file, and the numbers of lines that are not keys (nor comments or blank).
pub fn parse(text: &str) -> (Vec<AuthorizedKey>, Vec<usize>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(mut k) => {
                k.line = i + 1;
                keys.push(k);
            }
            None => bad.push(i + 1),
        }
    }
    (keys, bad)
}

fn parse_line(line: &str) -> Option<AuthorizedKey> {
    let (options, rest) = if is_key_type(first_word(line)) {
        (None, line)
    } else {
        let end = options_end(line);
        let (o, r) = line.split_at(end);
        (Some(o.to_owned()), r.trim_start())
    };
    let mut words = rest.splitn(3, char::is_whitespace);
    let key_type = words.next().filter(|t| is_key_type(t))?;
    let blob = words.next().filter(|b| !b.is_empty())?;
    let comment = words
        .next()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    Some(AuthorizedKey {
        line: 0,
        options,
        key_type: key_type.to_owned(),
        fingerprint: base64_decode(blob)
            .map(|b| format!("SHA256:{}", base64_encode(&Sha256::digest(&b)))),
        comment,
    })
}

fn first_word(s: &str) -> &str {
    s.split(char::is_whitespace).next().unwrap_or("")
}

/// OpenSSH key type names: plain, FIDO (`sk-`) and certificate forms.
fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-")
}

/// Where the options end: the first whitespace outside double quotes.
fn options_end(line: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return i,
            _ => {}
        }
    }
    line.len()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with optional padding; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character cannot encode a byte.
    (bits < 6).then_some(out)
}

/// Standard base64 without padding, as OpenSSH prints fingerprints.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::linux::fixture::{
        ALICE_ED25519, ALICE_ED25519_FP, BACKUP_RSA, BACKUP_RSA_FP,
    };

    #[test]
    fn keys_options_comments_and_fingerprints() {
        let text = format!(
            "# c\n{ALICE_ED25519}\n\ncommand=\"echo \\\"a b\\\"\",no-pty {BACKUP_RSA}\nssh-ed25519 AAAA\ngarbage line\nno-pty\nenvironment=\"X=1\" ssh-rsa !!!notbase64 c\n"
        );
        let (keys, bad) = parse(&text);
        assert_eq!(bad, [6, 7]);
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].line, 2);
        assert_eq!(keys[0].key_type, "ssh-ed25519");
        assert_eq!(keys[0].fingerprint.as_deref(), Some(ALICE_ED25519_FP));
        assert_eq!(keys[0].comment.as_deref(), Some("alice@laptop"));
        assert_eq!(keys[0].options, None);
        assert_eq!(
            keys[1].options.as_deref(),
            Some("command=\"echo \\\"a b\\\"\",no-pty")
        );
        assert_eq!(keys[1].fingerprint.as_deref(), Some(BACKUP_RSA_FP));
        assert_eq!(keys[1].comment.as_deref(), Some("backup@server"));
        assert_eq!(
            keys[1].summary(),
            format!(
                "ssh-rsa {BACKUP_RSA_FP} backup@server [options: command=\"echo \\\"a b\\\"\",no-pty]"
            )
        );
        assert_eq!(keys[2].comment, None);
        assert_eq!(keys[3].fingerprint, None);
        assert_eq!(keys[3].options.as_deref(), Some("environment=\"X=1\""));
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = base64_encode(data);
            assert_eq!(base64_decode(&enc).as_deref(), Some(data), "{enc}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8");
        assert_eq!(base64_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zm9v!"), None);
    }
}
