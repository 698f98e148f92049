use proptest::prelude::*;

use super::*;

const SPEC: ArgSpec = ArgSpec {
    positional: &["name", "path"],
    named: &["max"],
    flags: &["hash"],
};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn positional_named_and_flags() {
    let a = parse(&SPEC, &s(&["*.log", "/var", "-max", "5", "-HASH"])).unwrap();
    assert_eq!(a.get("name"), Some("*.log"));
    assert_eq!(a.get("path"), Some("/var"));
    assert_eq!(a.get("max"), Some("5"));
    assert!(a.flag("hash"));
}

#[test]
fn named_fills_out_of_order() {
    let a = parse(&SPEC, &s(&["-path", "/etc", "passwd"])).unwrap();
    assert_eq!(a.get("path"), Some("/etc"));
    assert_eq!(a.get("name"), Some("passwd"));
}

#[test]
fn double_dash_allows_leading_dash_values() {
    let a = parse(&SPEC, &s(&["--", "-weird-name"])).unwrap();
    assert_eq!(a.get("name"), Some("-weird-name"));
    // A lone '-' is a value, not a parameter.
    assert_eq!(parse(&SPEC, &s(&["-"])).unwrap().get("name"), Some("-"));
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(
        parse(&SPEC, &s(&["-nope"])).unwrap_err(),
        "unknown parameter '-nope'"
    );
    assert_eq!(
        parse(&SPEC, &s(&["-max"])).unwrap_err(),
        "parameter '-max' needs a value"
    );
    assert_eq!(
        parse(&SPEC, &s(&["a", "b", "c"])).unwrap_err(),
        "unexpected argument 'c'"
    );
    assert_eq!(
        parse(&SPEC, &s(&["-max", "1", "-max", "2"])).unwrap_err(),
        "parameter '-max' is given twice"
    );
}

proptest! {
    // Whatever the analyst types, parsing terminates with a value or an error and never panics;
    // and values given positionally come back verbatim.
    #[test]
    fn never_panics(args in proptest::collection::vec(".{0,8}", 0..6)) {
        let _ = parse(&SPEC, &args);
    }

    #[test]
    fn positional_values_round_trip(name in "[a-z*?.]{1,10}", path in "/[a-z/]{0,10}") {
        let a = parse(&SPEC, &[name.clone(), path.clone()]).unwrap();
        prop_assert_eq!(a.get("name"), Some(name.as_str()));
        prop_assert_eq!(a.get("path"), Some(path.as_str()));
    }
}
