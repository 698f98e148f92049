use proptest::prelude::*;

use super::*;

fn m(p: &str, n: &str) -> bool {
    Glob::new(p, false).unwrap().matches(n)
}

#[test]
fn wildcards() {
    assert!(m("*.log", "syslog.log"));
    assert!(m("*.log", ".log"));
    assert!(!m("*.log", "syslog.log.1"));
    assert!(m("a?c", "abc"));
    assert!(!m("a?c", "ac"));
    assert!(m("*", ""));
    assert!(m("**a**", "xxaxx"));
    assert!(m("passwd", "passwd"));
    assert!(!m("passwd", "passwd-"));
    assert!(m("a*b*c", "aXXbYYc"));
    assert!(!m("a*b*c", "aXXbYY"));
}

#[test]
fn classes_and_escapes() {
    assert!(m("file[0-9]", "file7"));
    assert!(!m("file[0-9]", "filex"));
    assert!(m("file[!0-9]", "filex"));
    assert!(m("file[^0-9]", "filex"));
    assert!(m("[]a]", "]"));
    assert!(m("[a-]", "-"));
    assert!(m(r"\*", "*"));
    assert!(!m(r"\*", "x"));
    assert!(Glob::new("[abc", false).is_err());
}

#[test]
fn case_folding_and_unicode() {
    assert!(Glob::new("*.LOG", true).unwrap().matches("a.log"));
    assert!(!Glob::new("*.LOG", false).unwrap().matches("a.log"));
    assert!(m("caf?", "café"));
}

proptest! {
    #[test]
    fn literal_matches_itself(s in "[a-zA-Z0-9._-]{0,20}") {
        prop_assert!(m(&s, &s));
    }

    #[test]
    fn star_prefix_suffix(prefix in "[a-z]{0,5}", mid in "[a-z.]{0,8}", suffix in "[a-z]{0,5}") {
        let name = format!("{prefix}{mid}{suffix}");
        let pattern = format!("{prefix}*{suffix}");
        prop_assert!(m(&pattern, &name));
    }

    #[test]
    fn never_panics(p in ".{0,12}", n in ".{0,12}") {
        if let Ok(g) = Glob::new(&p, false) {
            let _ = g.matches(&n);
        }
    }
}
