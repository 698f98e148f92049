//! A small file-type guess from the first bytes ("magic"), enough to tell an analyst what a file is
//! without shipping libmagic.

/// How many leading bytes [`guess`] looks at.
pub const HEAD_LEN: usize = 512;

/// A short stable name for the content type of a file starting with `head`.
pub fn guess(head: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x7fELF", "elf"),
        (b"#!", "script"),
        (b"\x1f\x8b", "gzip"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"%PDF-", "pdf"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF8", "gif"),
        (b"MZ", "pe"),
        (b"SQLite format 3\x00", "sqlite"),
        (b"-----BEGIN ", "pem"),
        (b"\xca\xfe\xba\xbe", "java_class_or_macho_fat"),
        (b"\xcf\xfa\xed\xfe", "macho"),
        (b"!<arch>\n", "ar_archive"),
    ];
    if head.is_empty() {
        return "empty";
    }
    if let Some((_, name)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return name;
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return "tar";
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "text"
    } else {
        "data"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_types() {
        assert_eq!(guess(b""), "empty");
        assert_eq!(guess(b"\x7fELF\x02\x01"), "elf");
        assert_eq!(guess(b"#!/bin/sh\necho hi\n"), "script");
        assert_eq!(guess(b"hello world\n"), "text");
        assert_eq!(guess("caf\u{e9}".as_bytes()), "text");
        assert_eq!(guess(&"caf\u{e9}".as_bytes()[..4]), "text");
        assert_eq!(guess(b"\x00\x01\x02"), "data");
        assert_eq!(guess(b"\x1f\x8b\x08"), "gzip");
    }
}
