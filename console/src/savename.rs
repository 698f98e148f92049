//! Names of downloaded files on the analyst's machine. The broker already sends a safe name; it is
//! checked again here because a name that reaches the file system decides where bytes are written.
//! Pure: no file system access.

use std::path::{Path, PathBuf};

/// Longest file name kept, in bytes (most file systems allow 255).
const MAX_NAME: usize = 200;

/// `name` made safe to use as one file name: no `/`, `\`, NUL or control characters, no leading
/// dots (no hidden files, never `.` or `..`), no trailing spaces or dots. When nothing usable is
/// left, `transfer-<id>` (itself cleaned).
pub fn safe_name(name: &str, transfer_id: &str) -> String {
    clean(name).unwrap_or_else(|| {
        clean(&format!("transfer-{transfer_id}")).unwrap_or_else(|| "transfer".to_owned())
    })
}

fn clean(name: &str) -> Option<String> {
    let kept: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let kept = kept
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut kept = kept.to_owned();
    if kept.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !kept.is_char_boundary(end) {
            end -= 1;
        }
        kept.truncate(end);
    }
    (!kept.is_empty() && kept.chars().any(|c| c != '_')).then_some(kept)
}

/// The `n`th choice of a file name: `report.txt`, then `report (1).txt`, `report (2).txt`…
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => format!("{stem} ({n}).{ext}"),
        _ => format!("{name} ({n})"),
    }
}

/// Where a download is written until it is complete and verified: `<name>.<transfer id>.part`
/// in the downloads folder, so a later attempt for the same transfer finds and resumes it.
pub fn part_path(dir: &Path, name: &str, transfer_id: &str) -> PathBuf {
    let id = safe_name(transfer_id, "x");
    dir.join(format!("{name}.{id}.part"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(safe_name("report.txt", "t1"), "report.txt");
        assert_eq!(
            safe_name("my file (copy).tar.gz", "t1"),
            "my file (copy).tar.gz"
        );
        assert_eq!(safe_name("journal-ß.log", "t1"), "journal-ß.log");
    }

    #[test]
    fn separators_nul_and_controls_are_replaced() {
        assert_eq!(safe_name("a/b\\c", "t1"), "a_b_c");
        assert_eq!(safe_name("a\0b", "t1"), "a_b");
        assert_eq!(safe_name("a\nb\x1b[31m", "t1"), "a_b_[31m");
        assert_eq!(safe_name("/etc/passwd", "t1"), "_etc_passwd");
    }

    #[test]
    fn leading_dots_and_dot_names_never_survive() {
        assert_eq!(safe_name(".bashrc", "t1"), "bashrc");
        assert_eq!(safe_name("..", "t1"), "transfer-t1");
        assert_eq!(safe_name(".", "t1"), "transfer-t1");
        assert_eq!(safe_name("../../x", "t1"), "_.._x");
        assert_eq!(safe_name("...", "t1"), "transfer-t1");
        assert_eq!(safe_name("name. ", "t1"), "name");
    }

    #[test]
    fn nothing_usable_falls_back_to_the_transfer_id() {
        assert_eq!(safe_name("", "0191c1e2"), "transfer-0191c1e2");
        assert_eq!(safe_name("/", "t1"), "transfer-t1");
        assert_eq!(safe_name("\0\0", "t1"), "transfer-t1");
        assert_eq!(safe_name("", "../x"), "transfer-.._x");
        assert_eq!(safe_name("", ""), "transfer-");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(300);
        let safe = safe_name(&long, "t1");
        assert!(safe.len() <= MAX_NAME, "{}", safe.len());
        assert!(safe.chars().all(|c| c == 'é'));
    }

    #[test]
    fn numbered_choices_go_before_the_extension() {
        assert_eq!(numbered("report.txt", 0), "report.txt");
        assert_eq!(numbered("report.txt", 1), "report (1).txt");
        assert_eq!(numbered("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered("README", 3), "README (3)");
        assert_eq!(numbered("trailing.", 1), "trailing. (1)");
    }

    #[test]
    fn part_files_name_the_transfer() {
        assert_eq!(
            part_path(Path::new("/d"), "a.txt", "t-1/x"),
            PathBuf::from("/d/a.txt.t-1_x.part")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_name_stays_inside_the_folder(name in "\\PC{0,40}", id in "[a-z0-9-]{0,12}") {
            let safe = safe_name(&name, &id);
            proptest::prop_assert!(!safe.is_empty());
            proptest::prop_assert!(!safe.starts_with('.'));
            proptest::prop_assert!(!safe.contains(['/', '\\', '\0']));
            proptest::prop_assert!(!safe.chars().any(char::is_control));
            let joined = Path::new("/d").join(&safe);
            proptest::prop_assert_eq!(joined.parent(), Some(Path::new("/d")));
        }
    }
}
