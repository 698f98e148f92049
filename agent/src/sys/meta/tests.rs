use super::*;

#[test]
fn mode_strings_match_ls() {
    assert_eq!(mode_string(0o100644), "-rw-r--r--");
    assert_eq!(mode_string(0o040755), "drwxr-xr-x");
    assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
    assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
    assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
    assert_eq!(mode_string(0o010600), "prw-------");
    assert_eq!(mode_octal(0o104755), "4755");
    assert_eq!(mode_octal(0o100644), "0644");
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(0, 0).as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(
        rfc3339(1_700_000_000, 500_000_000).as_deref(),
        Some("2023-11-14T22:13:20.5Z")
    );
}

#[test]
fn non_utf8_paths_are_flagged() {
    use std::ffi::OsStr;
    let p = Path::new(OsStr::from_bytes(b"/tmp/a\xffb"));
    let (s, flagged) = lossy(p);
    assert!(flagged);
    assert_eq!(s, "/tmp/a\u{fffd}b");
    assert_eq!(lossy(Path::new("/tmp/ok")), ("/tmp/ok".into(), false));
}
