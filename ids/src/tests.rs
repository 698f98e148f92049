use proptest::prelude::*;

use super::*;

const TOKENS: [Kind; 5] = [
    Kind::Tenant,
    Kind::Device,
    Kind::Session,
    Kind::Transfer,
    Kind::Broker,
];

#[test]
fn tokens_take_plain_ids() {
    for kind in TOKENS {
        for good in [
            "acme",
            "web-07",
            "a_b",
            "01965c3e-7f1a-7d2e-9a41-3b0c6f2d8e11",
            "A",
        ] {
            assert_eq!(check(kind, good), Ok(()), "{kind} {good}");
        }
        assert!(check(kind, &"x".repeat(MAX_TOKEN_LEN)).is_ok());
    }
}

#[test]
fn tokens_refuse_what_would_reach_another_subject_or_line() {
    for kind in TOKENS {
        for bad in [
            "", "acme.eu", "a*", ">", "a b", "a\nb", "a\tb", "a/b", "é", "a\0",
        ] {
            assert!(check(kind, bad).is_err(), "{kind} {bad:?}");
        }
        assert!(check(kind, &"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}

#[test]
fn a_dotted_tenant_is_refused_with_the_rule() {
    let err = tenant("acme.eu").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tenant id \"acme.eu\""), "{text}");
    assert!(text.contains("NATS subject"), "{text}");
    assert!(text.contains("A-Z a-z 0-9 _ -"), "{text}");
}

#[test]
fn users_may_be_addresses_but_not_lines() {
    for good in ["analyst-a", "alice@acme.example", "bob+ir@x.org", "j.doe"] {
        assert_eq!(user(good), Ok(()), "{good}");
    }
    for bad in ["", "a b", "a\nforged", "a*", "a>", "a/b"] {
        assert!(user(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn library_names_are_plain_file_names() {
    for good in ["collector.sh", "tool v2.bin", "a", "ÿ-script.py"] {
        assert_eq!(library_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "../x",
        "a/b",
        "a\\b",
        ".hidden",
        "nul\0x",
        "tab\tx",
        "/abs",
        "two\nlines",
    ] {
        assert!(library_name(bad).is_err(), "{bad:?}");
    }
    assert!(library_name(&"x".repeat(MAX_LIBRARY_NAME_LEN + 1)).is_err());
    let text = library_name("two\nlines").unwrap_err().to_string();
    assert!(text.contains("control character"), "{text}");
}

#[test]
fn a_long_id_is_refused_naming_its_limit() {
    let token = transfer(&"x".repeat(MAX_TOKEN_LEN + 1)).unwrap_err();
    assert!(
        token
            .to_string()
            .contains(&format!("longer than {MAX_TOKEN_LEN}")),
        "{token}"
    );
    let user = user(&"x".repeat(MAX_USER_LEN + 1)).unwrap_err();
    assert!(
        user.to_string()
            .contains(&format!("longer than {MAX_USER_LEN}")),
        "{user}"
    );
}

#[test]
fn a_refused_value_is_cut_in_the_message() {
    let err = device(&"y".repeat(10_000)).unwrap_err();
    assert_eq!(err.value.len(), SHOWN);
}

proptest! {
    /// Whatever a token accepts is one NATS subject level and one KV key part.
    #[test]
    fn accepted_tokens_are_single_subject_levels(value in "\\PC{0,70}") {
        if tenant(&value).is_ok() {
            prop_assert!(!value.is_empty() && value.len() <= MAX_TOKEN_LEN);
            prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        }
    }

    #[test]
    fn accepted_users_hold_no_whitespace_or_wildcard(value in "\\PC{0,130}") {
        if user(&value).is_ok() {
            prop_assert!(!value.contains(char::is_whitespace));
            prop_assert!(!value.contains(['*', '>']));
        }
    }
}
