//! Where a command's rendered output goes in the REPL: the terminal, or a file on the analyst's
//! machine (`> file` writes it, `>> file` appends to it).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use commands::Redirect;

/// Writes `body` to stdout, or to the redirect's file and says so on stderr. Failures are shown,
/// not returned: the console goes on.
pub fn deliver(body: &str, redirect: Option<&Redirect>) {
    let Some(redirect) = redirect else {
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout
            .write_all(body.as_bytes())
            .and_then(|()| stdout.flush())
        {
            crate::say!("lr: cannot write output: {e}");
        }
        return;
    };
    let shown = &redirect.path;
    match write_file(body, redirect) {
        Ok(()) => crate::say!(
            "lr: output {} {shown} ({} bytes)",
            if redirect.append {
                "appended to"
            } else {
                "written to"
            },
            body.len()
        ),
        Err(e) => crate::say!("lr: cannot write {shown}: {e}"),
    }
}

fn write_file(body: &str, redirect: &Redirect) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(redirect.append)
        .truncate(!redirect.append)
        .open(local_path(&redirect.path))?;
    file.write_all(body.as_bytes())?;
    file.flush()
}

/// The path as the shell would read it: a leading `~/` is the home directory.
fn local_path(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt").to_str().unwrap().to_owned();
        let mut redirect = Redirect {
            path: path.clone(),
            append: false,
        };
        write_file("one\n", &redirect).unwrap();
        write_file("two\n", &redirect).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        redirect.append = true;
        write_file("three\n", &redirect).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\nthree\n");
    }

    #[test]
    fn tilde_is_home() {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        let expected = match &home {
            Some(home) => PathBuf::from(home).join("x.txt"),
            None => PathBuf::from("~/x.txt"),
        };
        assert_eq!(local_path("~/x.txt"), expected);
        assert_eq!(local_path("a/~/b"), PathBuf::from("a/~/b"));
    }
}
