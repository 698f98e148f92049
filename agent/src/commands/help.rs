//! `help [command]`: the command list with one-line summaries, or one command's usage and examples.
//!
//! Output without a name:
//! ```json
//! {"commands": [{"name": "cd", "summary": "..."}]}
//! ```
//! With a name:
//! ```json
//! {"name": "findfile", "summary": "...", "usage": "findfile <name> [-path <root>] ...",
//!  "examples": ["..."], "default_timeout_seconds": 1800}
//! ```

use serde_json::json;

use super::args::{self, ArgSpec};
use super::{CommandContext, CommandError, CommandResult, CommandSpec, REGISTRY, TEN_MINUTES};

pub const SPEC: CommandSpec = CommandSpec {
    name: "help",
    summary: "list the commands, or show one command's usage and examples",
    usage: "help [command]",
    examples: &["help", "help findfile"],
    default_timeout: TEN_MINUTES,
    run: |ctx, args| Box::pin(run(ctx, args)),
};

const ARGS: ArgSpec = ArgSpec {
    positional: &["command"],
    named: &[],
    flags: &[],
};

pub async fn run(_ctx: CommandContext, args: Vec<String>) -> CommandResult {
    let parsed = args::parse(&ARGS, &args).map_err(CommandError::invalid)?;
    let Some(name) = parsed.get("command") else {
        let list: Vec<_> = REGISTRY
            .iter()
            .map(|c| json!({"name": c.name, "summary": c.summary}))
            .collect();
        return Ok(json!({ "commands": list }).into());
    };
    let Some(c) = super::find(name) else {
        return Err(CommandError::failed(format!(
            "no command named '{name}'; run help for the list"
        )));
    };
    Ok(json!({
        "name": c.name,
        "summary": c.summary,
        "usage": c.usage,
        "examples": c.examples,
        "default_timeout_seconds": c.default_timeout.as_secs(),
    })
    .into())
}

#[cfg(test)]
mod tests {
    use crate::commands::REGISTRY;
    use crate::commands::testutil::run;
    use crate::model::Status;

    #[tokio::test]
    async fn lists_every_command() {
        let o = run("help", "/", &[]).await;
        let out = o.output.unwrap();
        let names: Vec<_> = out["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, REGISTRY.iter().map(|c| c.name).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn shows_one_command_and_refuses_unknown_ones() {
        let o = run("help", "/", &["FindFile"]).await;
        let out = o.output.unwrap();
        assert_eq!(out["name"], "findfile");
        assert_eq!(out["default_timeout_seconds"], 1800);
        assert!(!out["examples"].as_array().unwrap().is_empty());
        let o = run("help", "/", &["nope"]).await;
        assert_eq!(o.status, Status::Failed);
    }

    #[tokio::test]
    async fn unknown_command_says_what_to_do() {
        let o = run("frobnicate", "/tmp", &[]).await;
        assert_eq!(o.status, Status::UnknownCommand);
        assert_eq!(
            o.error,
            "unknown command 'frobnicate'; run help for the list"
        );
        assert_eq!(o.cwd, "/tmp");
    }

    #[test]
    fn registry_rows_are_complete_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in REGISTRY {
            assert!(seen.insert(c.name), "duplicate {}", c.name);
            assert!(c.usage.starts_with(c.name));
            assert!(!c.summary.is_empty() && !c.examples.is_empty());
            // House style: starts lowercase, no trailing period (acronyms such as MD5 stay).
            assert!(c.summary.starts_with(|ch: char| ch.is_ascii_lowercase()));
            assert!(!c.summary.ends_with('.'));
        }
    }
}
