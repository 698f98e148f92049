//! `cd <path>`: change the session's working directory.
//!
//! The path resolves against the current cwd (absolute, relative, `..`) and must be a directory,
//! following symlinks. The cwd stays the logical path the analyst typed (as a shell's `cd` does),
//! not the symlink-resolved one.
//!
//! Output: `{"cwd": "/abs/path"}`; the result's cwd is set to the same path.

use ::commands::Invocation;
use serde_json::json;

use super::{CommandContext, CommandError, CommandResult, blocking, required};

pub async fn run(ctx: CommandContext, args: Invocation) -> CommandResult {
    let target = ctx.resolve(required(&args, "path")?);
    blocking(move || {
        // metadata() follows symlinks: a link to a directory is a fine cwd.
        let md = std::fs::metadata(&target)
            .map_err(|e| CommandError::io("change directory to", &target, &e))?;
        if !md.is_dir() {
            return Err(CommandError::failed(format!(
                "cannot change directory to '{}': it is not a directory; use fileinfo to look at a file",
                target.display()
            )));
        }
        Ok(super::CommandOutput {
            value: json!({ "cwd": target.display().to_string() }),
            cwd: Some(target),
            file_facts: None,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::commands::testutil::run;
    use crate::model::Status;

    #[tokio::test]
    async fn changes_into_existing_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("sub"), tmp.path().join("link")).unwrap();

        let o = run("cd", root, &["sub"]).await;
        assert_eq!(o.status, Status::Ok, "{}", o.error);
        assert_eq!(o.cwd, format!("{root}/sub"));
        assert_eq!(o.output.unwrap()["cwd"], format!("{root}/sub"));

        let o = run("cd", &format!("{root}/sub"), &[".."]).await;
        assert_eq!(o.cwd, root);

        let o = run("cd", "/", &[&format!("{root}/link")]).await;
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.cwd, format!("{root}/link"));
    }

    #[tokio::test]
    async fn refuses_files_and_missing_paths_keeping_the_cwd() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();

        let o = run("cd", root, &["f"]).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.contains("not a directory"), "{}", o.error);
        assert_eq!(o.cwd, root);

        let o = run("cd", root, &["missing"]).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.contains("no such file"), "{}", o.error);

        let o = run("cd", root, &[]).await;
        assert_eq!(o.status, Status::InvalidArguments);
        assert!(o.error.contains("usage: cd <path>"), "{}", o.error);
    }
}
