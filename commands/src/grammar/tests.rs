//! The grammar: the seed's syntax, clear errors, and property tests (every invocation the grammar
//! can express reads back from its canonical line; garbage never panics).

use proptest::prelude::*;

use super::*;
use crate::table::{Platform, Runs};

fn values(line: &str) -> Vec<(&'static str, String)> {
    parse(line).unwrap().values
}

#[test]
fn positional_named_flags_quotes_and_output() {
    assert_eq!(values("dir /etc"), vec![("path", "/etc".to_string())]);
    assert_eq!(values("dir -path /etc"), vec![("path", "/etc".to_string())]);
    assert_eq!(
        values(r#"cd "/home/a b""#),
        vec![("path", "/home/a b".to_string())]
    );
    let find =
        parse(r#"FINDFILE -max 5 "*.log" -nocase -path /var -output json > out.txt"#).unwrap();
    assert_eq!(find.spec.name, "findfile");
    assert_eq!(find.value("name"), Some("*.log"));
    assert_eq!(find.value("path"), Some("/var"));
    assert_eq!(find.value("max"), Some("5"));
    assert!(find.flag("nocase"));
    assert_eq!(find.output, Some(Output::Json));
    assert_eq!(
        find.redirect,
        Some(Redirect {
            path: "out.txt".into(),
            append: false
        })
    );
    assert_eq!(
        find.device_args(),
        vec!["-name", "*.log", "-path", "/var", "-max", "5", "-nocase"]
    );
    assert_eq!(
        parse("processes >>log.txt").unwrap().redirect,
        Some(Redirect {
            path: "log.txt".into(),
            append: true
        })
    );
    // A value starting with '-' goes after --, or in quotes.
    assert_eq!(values("cd -- -weird"), vec![("path", "-weird".to_string())]);
    assert_eq!(
        values(r#"cd "-weird""#),
        vec![("path", "-weird".to_string())]
    );
}

#[test]
fn device_arguments_read_back_as_the_same_invocation() {
    let line = parse(r#"findfile "my *.log" -path /var -allfs -output json"#).unwrap();
    let device = parse_args("findfile", &line.device_args()).unwrap();
    assert_eq!(device.values, line.values);
    assert_eq!(device.flags, line.flags);
    assert!(matches!(
        parse_args("nope", &[]),
        Err(ParseError::UnknownCommand { .. })
    ));
}

#[test]
fn mistakes_are_named_with_a_suggestion() {
    let err = parse("proceses").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown command 'proceses' (did you mean processes?); type help for the list of commands"
    );
    let err = parse("findfile x -mxa 3").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("findfile has no parameter -mxa (did you mean max?)"),
        "{err}"
    );
    assert!(matches!(
        parse("cd"),
        Err(ParseError::MissingRequired { name: "path", .. })
    ));
    assert!(matches!(
        parse("cd /a /b"),
        Err(ParseError::TooManyValues { .. })
    ));
    assert!(matches!(
        parse("findfile x -max 0"),
        Err(ParseError::InvalidValue { name: "max", .. })
    ));
    assert!(matches!(
        parse("findfile x -xdev maybe"),
        Err(ParseError::InvalidValue { name: "xdev", .. })
    ));
    assert!(matches!(
        parse("dir -output yaml"),
        Err(ParseError::InvalidValue { name: "output", .. })
    ));
    assert!(matches!(
        parse("dir -path"),
        Err(ParseError::MissingValue { .. })
    ));
    assert!(matches!(
        parse("processes -hash -hash"),
        Err(ParseError::Repeated { .. })
    ));
    assert!(matches!(parse("dir > "), Err(ParseError::BadRedirect)));
    assert!(matches!(parse("dir > a b"), Err(ParseError::BadRedirect)));
    assert!(matches!(
        parse(r#"cd "/tmp"#),
        Err(ParseError::UnbalancedQuote)
    ));
    assert!(matches!(parse(r"cd x\"), Err(ParseError::DanglingEscape)));
    assert!(matches!(
        parse("dir\u{7}"),
        Err(ParseError::ControlCharacter)
    ));
    assert!(matches!(parse("   "), Err(ParseError::Empty)));
    assert!(matches!(
        parse(&"a".repeat(MAX_LEN + 1)),
        Err(ParseError::TooLong(_))
    ));
}

#[test]
fn the_table_is_consistent() {
    for spec in TABLE {
        assert_eq!(find(spec.name), Some(spec), "names are unique");
        assert!(!spec.summary.is_empty() && !spec.platforms.is_empty());
        let required_after_optional = spec
            .params
            .iter()
            .filter(|p| p.positional)
            .skip_while(|p| p.required)
            .any(|p| p.required);
        assert!(
            !required_after_optional,
            "{}: a required positional after an optional one",
            spec.name
        );
        for example in spec.examples {
            let read = parse(example)
                .unwrap_or_else(|e| panic!("example '{example}' does not parse: {e}"));
            assert_eq!(read.spec.name, spec.name);
        }
        if spec.runs == Runs::Device {
            assert!(spec.supports(Platform::Linux) || spec.name == "registry");
        }
    }
}

fn value_strategy() -> impl Strategy<Value = String> {
    // Anything printable, including quotes, backslashes, spaces, leading '-' and '>'.
    proptest::string::string_regex(r#"[ -~\t]{1,24}"#).unwrap()
}

fn invocation() -> impl Strategy<Value = Invocation> {
    (0..TABLE.len())
        .prop_flat_map(|i| {
            let spec = &TABLE[i];
            let values = spec
                .params
                .iter()
                .map(|p| {
                    let value: BoxedStrategy<String> = match p.kind {
                        ParamKind::Count => (1u64..100_000).prop_map(|n| n.to_string()).boxed(),
                        ParamKind::Bool => {
                            prop_oneof![Just("true".to_string()), Just("false".to_string())].boxed()
                        }
                        _ => value_strategy().boxed(),
                    };
                    let present = if p.required {
                        Just(true).boxed()
                    } else {
                        any::<bool>().boxed()
                    };
                    (present, value).prop_map(move |(present, v)| present.then_some((p.name, v)))
                })
                .collect::<Vec<_>>();
            let flags = proptest::collection::vec(any::<bool>(), spec.flags.len());
            let output = prop_oneof![
                Just(None),
                Just(Some(Output::Json)),
                Just(Some(Output::Table))
            ];
            let redirect = proptest::option::of(
                (value_strategy(), any::<bool>())
                    .prop_map(|(path, append)| Redirect { path, append }),
            );
            (Just(spec), values, flags, output, redirect, any::<bool>())
        })
        .prop_map(
            |(spec, values, flags, output, redirect, background)| Invocation {
                spec,
                values: values.into_iter().flatten().collect(),
                flags: spec
                    .flags
                    .iter()
                    .zip(flags)
                    .filter(|(_, on)| *on)
                    .map(|(f, _)| f.name)
                    .collect(),
                output,
                background: background && redirect.is_none() && spec.runs.is_transfer(),
                redirect,
            },
        )
}

proptest! {
    #[test]
    fn every_invocation_reads_back_from_its_line(invocation in invocation()) {
        let line = invocation.to_line();
        prop_assert_eq!(parse(&line), Ok(invocation), "line: {}", line);
    }

    #[test]
    fn garbage_gives_an_error_or_an_invocation_never_a_panic(line in "\\PC{0,64}") {
        if let Ok(invocation) = parse(&line) {
            // What it read, it can write back.
            prop_assert_eq!(parse(&invocation.to_line()), Ok(invocation));
        }
    }
}
