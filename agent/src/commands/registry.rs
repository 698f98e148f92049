//! `registry`: the Windows registry does not exist on Linux, so the command fails with status
//! UNSUPPORTED and says so, whatever its arguments; no output.

use super::{CommandContext, CommandError, CommandResult, CommandSpec, TEN_MINUTES};

pub const SPEC: CommandSpec = CommandSpec {
    name: "registry",
    summary: "show a Windows registry key (Windows only)",
    usage: "registry <key>",
    examples: &["registry HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"],
    default_timeout: TEN_MINUTES,
    run: |ctx, args| Box::pin(run(ctx, args)),
};

pub async fn run(_ctx: CommandContext, _args: Vec<String>) -> CommandResult {
    Err(CommandError::Unsupported(format!(
        "registry is a Windows command; not supported on {}",
        std::env::consts::OS
    )))
}

#[cfg(test)]
mod tests {
    use crate::commands::testutil::run;
    use crate::model::Status;

    #[tokio::test]
    async fn is_unsupported_on_linux_with_or_without_arguments() {
        for args in [&[][..], &["HKLM\\Software"]] {
            let o = run("registry", "/", args).await;
            assert_eq!(o.status, Status::Unsupported);
            assert_eq!(
                o.error,
                "registry is a Windows command; not supported on linux"
            );
            assert_eq!(o.output, None);
        }
    }
}
