use std::collections::HashSet;
use std::time::Duration;

use ::commands::{Platform, Runs, TABLE};
use proptest::prelude::*;

use super::testutil::run;
use super::{REGISTRY, read_args, timeout_for};
use crate::model::Status;

/// Device commands of the table for Linux that this agent does not implement yet.
const NOT_BUILT: &[&str] = &[];

#[test]
fn the_registry_binds_every_linux_device_command_of_the_table() {
    let mut seen = HashSet::new();
    for i in REGISTRY {
        assert!(seen.insert(i.name), "{} is registered twice", i.name);
        let spec = TABLE.iter().find(|s| s.name == i.name);
        let spec = spec.unwrap_or_else(|| panic!("{} is not in the command table", i.name));
        assert_eq!(spec.runs, Runs::Device, "{} runs in the console", i.name);
        assert!(
            spec.supports(Platform::Linux),
            "{} is not for linux",
            i.name
        );
    }
    for spec in TABLE
        .iter()
        .filter(|s| s.runs == Runs::Device && s.supports(Platform::Linux))
    {
        assert_eq!(
            seen.contains(spec.name),
            !NOT_BUILT.contains(&spec.name),
            "{}: implemented here or listed in NOT_BUILT, not both",
            spec.name
        );
    }
}

#[tokio::test]
async fn names_outside_the_table_are_unknown() {
    let o = run("frobnicate", "/tmp", &[]).await;
    assert_eq!(o.status, Status::UnknownCommand);
    assert_eq!(
        o.error,
        "unknown command 'frobnicate'; run help for the list"
    );
    assert_eq!(o.cwd, "/tmp");

    let o = run("jobs", "/", &[]).await;
    assert_eq!(o.status, Status::UnknownCommand);
    assert_eq!(o.error, "jobs runs in the console, not on the device");
}

#[tokio::test]
async fn a_windows_command_is_unsupported_whatever_its_arguments() {
    for args in [&[][..], &["HKLM\\Software"], &["-bogus"]] {
        let o = run("registry", "/", args).await;
        assert_eq!(o.status, Status::Unsupported, "{args:?}");
        assert_eq!(
            o.error,
            "registry is a Windows command; not supported on linux"
        );
        assert_eq!(o.output, None);
    }
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let o = run("DiR", tmp.path().to_str().unwrap(), &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    assert_eq!(o.output.unwrap()["entries"][0]["name"], "f");
}

#[test]
fn a_request_without_timeout_gets_the_tables() {
    assert_eq!(timeout_for("findfile", None), Duration::from_secs(30 * 60));
    assert_eq!(
        timeout_for("FINDFILE", Some(Duration::ZERO)),
        Duration::from_secs(30 * 60)
    );
    assert_eq!(timeout_for("dir", None), Duration::from_secs(10 * 60));
    assert_eq!(
        timeout_for("dir", Some(Duration::from_secs(5))),
        Duration::from_secs(5)
    );
    assert_eq!(
        timeout_for("frobnicate", None),
        Duration::from_secs(10 * 60)
    );
}

#[tokio::test]
async fn arguments_as_the_broker_sends_them_and_as_typed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("sub/A.LOG"), b"x").unwrap();
    let root = tmp.path().to_str().unwrap();

    for args in [&["-path", "sub"][..], &["sub"], &["--", "sub"]] {
        let o = run("dir", root, args).await;
        assert_eq!(o.status, Status::Ok, "{args:?}: {}", o.error);
        assert_eq!(o.output.unwrap()["entries"][0]["name"], "A.LOG");
    }
    for args in [
        &["-name", "a.log", "-path", root, "-max", "5", "-nocase"][..],
        &["a.log", "-NoCase", "-Path", root],
    ] {
        let o = run("findfile", "/", args).await;
        assert_eq!(o.status, Status::Ok, "{args:?}: {}", o.error);
        assert_eq!(o.output.unwrap()["matches"].as_array().unwrap().len(), 1);
    }
    // `-output` is the console's business; the agent answers JSON either way.
    let o = run("dir", root, &["-output", "table"]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
}

#[tokio::test]
async fn bad_arguments_name_the_problem_and_show_the_usage_once() {
    for (command, args, error) in [
        (
            "processes",
            &["-bogus"][..],
            "processes has no parameter -bogus; usage: processes [-hash]",
        ),
        (
            "processes",
            &["-hash", "-hash"],
            "-hash was given twice; usage: processes [-hash]",
        ),
        (
            "fileinfo",
            &[],
            "fileinfo needs <path>; usage: fileinfo <path>",
        ),
        (
            "connections",
            &["x"],
            "connections takes no more values, but got 'x'; usage: connections",
        ),
        (
            "findfile",
            &["x", "-max", "0"],
            "-max must be a whole number of at least 1, not '0'; usage: findfile <name> [-path <path>] [-max <count>] [-xdev <true|false>] [-allfs] [-nocase]",
        ),
        (
            "dir",
            &[">>", "out.txt"],
            "'>> out.txt' writes output to a file on the analyst's machine; the console does that, not the device; usage: dir [path]",
        ),
    ] {
        let o = run(command, "/", args).await;
        assert_eq!(o.status, Status::InvalidArguments, "{command} {args:?}");
        assert_eq!(o.error, error);
        assert_eq!(o.error.matches("usage:").count(), 1);
    }
}

/// A value the broker may send: anything without control characters, including ones that would
/// read as options (`-x`, `--`) or a redirection (`>x`) in another position.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\p{Cc}]{1,12}",
        "[^\\p{Cc}]{0,8}".prop_map(|v| format!("-{v}")),
        "[^\\p{Cc}]{0,8}".prop_map(|v| format!(">{v}")),
    ]
}

proptest! {
    // The broker sends every value as `-name value`: it reaches the command verbatim.
    #[test]
    fn values_sent_by_name_arrive_verbatim(name in value(), path in value(), max in 1u32..20_000) {
        let spec = ::commands::find("findfile").unwrap();
        let max = max.to_string();
        let args = ["-name", &name, "-path", &path, "-max", &max, "-allfs"].map(String::from);
        let invocation = read_args(spec, &args).unwrap();
        prop_assert_eq!(invocation.value("name"), Some(name.as_str()));
        prop_assert_eq!(invocation.value("path"), Some(path.as_str()));
        prop_assert_eq!(invocation.value("max"), Some(max.as_str()));
        prop_assert!(invocation.flag("allfs"));
    }

    // Whatever arrives, reading it ends with arguments or an error, never a panic.
    #[test]
    fn reading_any_arguments_never_panics(
        command in proptest::sample::select(REGISTRY.iter().map(|i| i.name).collect::<Vec<_>>()),
        args in proptest::collection::vec(".{0,8}", 0..6),
    ) {
        let _ = read_args(::commands::find(command).unwrap(), &args);
    }
}
