//! `help [command]`: the commands this agent runs with one-line summaries, or one command's usage,
//! parameters, flags, examples and default timeout. Everything comes from the shared table.
//!
//! Output without a name:
//! ```json
//! {"commands": [{"name": "cd", "summary": "..."}]}
//! ```
//! With a name:
//! ```json
//! {"name": "findfile", "summary": "...", "usage": "findfile <name> [-path <path>] ...",
//!  "params": [{"name": "name", "kind": "text", "required": true, "positional": true,
//!              "help": "..."}],
//!  "flags": [{"name": "nocase", "help": "..."}],
//!  "examples": ["..."], "default_timeout_seconds": 1800}
//! ```
//! `kind` is `path`, `text`, `count` (a whole number of at least 1) or `bool` (`true|false`).

use ::commands::{Invocation, ParamKind, TABLE};
use serde_json::json;

use super::{CommandContext, CommandError, CommandResult, lookup};

pub async fn run(_ctx: CommandContext, args: Invocation) -> CommandResult {
    let Some(name) = args.value("command") else {
        let list: Vec<_> = TABLE
            .iter()
            .filter(|s| lookup(s.name).is_ok())
            .map(|s| json!({"name": s.name, "summary": s.summary}))
            .collect();
        return Ok(json!({ "commands": list }).into());
    };
    let (spec, _) = lookup(name).map_err(|(_, why)| CommandError::failed(why))?;
    let params: Vec<_> = spec
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": kind_name(p.kind),
                "required": p.required,
                "positional": p.positional,
                "help": p.help,
            })
        })
        .collect();
    let flags: Vec<_> = spec
        .flags
        .iter()
        .map(|f| json!({"name": f.name, "help": f.help}))
        .collect();
    Ok(json!({
        "name": spec.name,
        "summary": spec.summary,
        "usage": spec.usage(),
        "params": params,
        "flags": flags,
        "examples": spec.examples,
        "default_timeout_seconds": spec.timeout.as_secs(),
    })
    .into())
}

fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Path => "path",
        ParamKind::Text => "text",
        ParamKind::Count => "count",
        ParamKind::Bool => "bool",
    }
}

#[cfg(test)]
mod tests {
    use ::commands::TABLE;

    use crate::commands::REGISTRY;
    use crate::commands::testutil::run;
    use crate::model::Status;

    #[tokio::test]
    async fn lists_the_implemented_commands_in_table_order() {
        let o = run("help", "/", &[]).await;
        let out = o.output.unwrap();
        let listed: Vec<_> = out["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let in_table_order: Vec<_> = TABLE
            .iter()
            .map(|s| s.name)
            .filter(|n| REGISTRY.iter().any(|i| i.name == *n))
            .collect();
        assert_eq!(listed, in_table_order);
        assert_eq!(listed.len(), REGISTRY.len());
        let cd = TABLE.iter().find(|s| s.name == "cd").unwrap();
        assert_eq!(out["commands"][0]["summary"], cd.summary);
    }

    #[tokio::test]
    async fn explains_one_command_from_the_table() {
        // Positional as typed, and `-command` as the broker sends it; names in any case.
        for args in [&["FindFile"][..], &["-command", "findfile"]] {
            let o = run("help", "/", args).await;
            assert_eq!(o.status, Status::Ok, "{}", o.error);
            let out = o.output.unwrap();
            let spec = ::commands::find("findfile").unwrap();
            assert_eq!(out["name"], "findfile");
            assert_eq!(out["summary"], spec.summary);
            assert_eq!(out["usage"], spec.usage());
            assert_eq!(out["default_timeout_seconds"], 1800);
            assert_eq!(
                out["examples"].as_array().unwrap().len(),
                spec.examples.len()
            );
            let max = &out["params"][2];
            assert_eq!(max["name"], "max");
            assert_eq!(max["kind"], "count");
            assert_eq!(max["positional"], false);
            assert!(max["help"].as_str().unwrap().contains("1000"));
            assert_eq!(out["params"][0]["required"], true);
            let flags: Vec<_> = out["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            assert_eq!(flags, ["allfs", "nocase"]);
        }
        let o = run("help", "/", &["dir"]).await;
        assert_eq!(o.output.unwrap()["default_timeout_seconds"], 600);
    }

    #[tokio::test]
    async fn says_why_a_command_is_not_explained_here() {
        for (name, error) in [
            ("nope", "unknown command 'nope'; run help for the list"),
            ("cls", "cls runs in the console, not on the device"),
            (
                "registry",
                "registry is a Windows command; not supported on linux",
            ),
        ] {
            let o = run("help", "/", &[name]).await;
            assert_eq!(o.status, Status::Failed, "{name}");
            assert_eq!(o.error, error);
        }
    }
}
