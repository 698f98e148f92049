//! The output of every device command matches `commands/output-schema.json`, the documented field
//! names scripts rely on: top-level fields, and the fields of each row of a list of objects.
//! `LR_UPDATE_SCHEMA=1 cargo test -p agent schema` rewrites the file from what the commands print.

use std::collections::BTreeMap;
use std::time::Duration;

use ::commands::{Runs, TABLE};
use serde_json::Value;

use super::linux::fixture;
use super::{CommandContext, PLATFORM, execute};

/// Field name -> the fields of its rows (empty when it is not a list of objects, or no row was seen).
type Shape = BTreeMap<String, Vec<String>>;

fn shape(output: &Value) -> Shape {
    let Value::Object(fields) = output else {
        return Shape::new();
    };
    fields
        .iter()
        .map(|(name, value)| {
            let mut row_fields: Vec<String> = match value {
                Value::Array(rows) => rows
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|row| row.keys().cloned())
                    .collect(),
                _ => Vec::new(),
            };
            row_fields.sort();
            row_fields.dedup();
            (name.clone(), row_fields)
        })
        .collect()
}

/// Runs `name` where it has something to show: the fixture tree for configuration, the live
/// system for kernel state, temp files for the file commands.
async fn sample(name: &str, fixture_root: &std::path::Path, files: &std::path::Path) -> Value {
    let file = files.join("sample.txt");
    let dir = files.display().to_string();
    let (ctx, args): (CommandContext, Vec<String>) = match name {
        "cd" | "dir" => (CommandContext::new("/", Duration::from_secs(60)), vec![dir]),
        "fileinfo" => (
            CommandContext::new("/", Duration::from_secs(60)),
            vec![file.display().to_string()],
        ),
        "findfile" => (
            CommandContext::new("/", Duration::from_secs(60)),
            vec!["sample*".into(), "-path".into(), dir],
        ),
        "services" | "scheduledtasks" | "startupfolders" | "persistence" => {
            (fixture::ctx(fixture_root), vec![])
        }
        _ => (CommandContext::new("/", Duration::from_secs(60)), vec![]),
    };
    let outcome = execute(ctx, name, args).await;
    outcome
        .output
        .unwrap_or_else(|| panic!("{name} gave no output: {}", outcome.error))
}

#[tokio::test]
async fn every_device_command_prints_the_documented_fields() {
    let fixture_root = fixture::build();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("sample.txt"), "hello").unwrap();
    let schema_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../commands/output-schema.json"
    );
    let documented: BTreeMap<String, Shape> =
        serde_json::from_str(::commands::OUTPUT_SCHEMA).expect("output-schema.json is valid JSON");

    let mut observed: BTreeMap<String, Shape> = BTreeMap::new();
    for spec in TABLE
        .iter()
        .filter(|s| s.runs == Runs::Device && s.supports(PLATFORM))
    {
        observed.insert(
            spec.name.to_string(),
            shape(&sample(spec.name, fixture_root.path(), files.path()).await),
        );
    }

    if std::env::var_os("LR_UPDATE_SCHEMA").is_some() {
        // Keep row fields already documented for lists that happened to be empty here.
        for (command, fields) in observed.iter_mut() {
            for (field, rows) in fields.iter_mut() {
                if rows.is_empty()
                    && let Some(known) = documented.get(command).and_then(|f| f.get(field))
                {
                    rows.clone_from(known);
                }
            }
        }
        std::fs::write(
            schema_path,
            serde_json::to_string_pretty(&observed).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let hint = "if the change is intended, run LR_UPDATE_SCHEMA=1 cargo test -p agent schema and review the diff";
    assert_eq!(
        observed.keys().collect::<Vec<_>>(),
        documented.keys().collect::<Vec<_>>(),
        "commands in the schema; {hint}"
    );
    for (command, fields) in &observed {
        let known = &documented[command];
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            known.keys().collect::<Vec<_>>(),
            "top-level fields of {command}; {hint}"
        );
        for (field, rows) in fields {
            // A list that was empty here, or is undocumented, says nothing about its rows.
            if !rows.is_empty() && !known[field].is_empty() {
                assert_eq!(rows, &known[field], "fields of {command}.{field}[]; {hint}");
            }
        }
    }
}
