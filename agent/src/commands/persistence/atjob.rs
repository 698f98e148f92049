//! at(1) spool files: the job's owner, time and command.
//!
//! A spool file is a shell script at writes: a header (`# atrun uid=1000 gid=1000`), the saved
//! environment, a `cd` into the directory the job was made in, then the user's commands, since
//! at 3.1.14 inside a here-document ending in a `marcinDELIMITER...` line. Its name encodes the
//! queue, the job number and the minute it runs: `a0000201c7e7d4` is queue `a`, job 2, minute
//! 0x01c7e7d4 after the epoch.

use jiff::Timestamp;

/// What a spool file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtJob {
    pub uid: Option<u32>,
    pub command: String,
}

/// The queue letter, job number and run time encoded in a spool file's name.
pub fn parse_name(name: &str) -> Option<(char, u32, Timestamp)> {
    if name.len() != 14 || !name.is_ascii() {
        return None;
    }
    let queue = name.chars().next().filter(char::is_ascii_alphabetic)?;
    let job = u32::from_str_radix(&name[1..6], 16).ok()?;
    let minutes = i64::from_str_radix(&name[6..], 16).ok()?;
    let at = Timestamp::from_second(minutes.checked_mul(60)?).ok()?;
    Some((queue, job, at))
}

/// The owner and the user's commands (one line each, joined by "; ").
pub fn parse(text: &str) -> AtJob {
    let uid = text.lines().find_map(|l| {
        l.strip_prefix("# atrun uid=")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let lines: Vec<&str> = text.lines().collect();
    let body: Vec<&str> = match here_document(&lines) {
        Some(body) => body,
        // Older at: the commands follow the `cd ... || { ... }` block.
        None => match lines.iter().rposition(|l| l.trim() == "}") {
            Some(end) => lines[end + 1..].to_vec(),
            None => lines
                .iter()
                .copied()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect(),
        },
    };
    let command = body
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    AtJob { uid, command }
}

fn here_document<'a>(lines: &[&'a str]) -> Option<Vec<&'a str>> {
    let start = lines
        .iter()
        .position(|l| l.contains("<< 'marcinDELIMITER"))?;
    let delimiter = lines[start]
        .rsplit_once("<< '")?
        .1
        .trim_end()
        .strip_suffix('\'')?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_end() == delimiter)
        .map_or(lines.len(), |i| start + 1 + i);
    Some(lines[start + 1..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_names() {
        let (q, job, at) = parse_name("a0000201c7e7d4").unwrap();
        assert_eq!((q, job), ('a', 2));
        assert_eq!(at.as_second(), 0x01c7_e7d4 * 60);
        assert_eq!(parse_name(".SEQ"), None);
        assert_eq!(parse_name("a0000z01c7e7d4"), None);
        assert_eq!(parse_name("é000201c7e7d4"), None);
    }

    #[test]
    fn reads_owner_and_commands_old_and_new_format() {
        let new = parse(
            "#!/bin/sh\n# atrun uid=1000 gid=1000\n# mail alice 0\numask 22\ncd /home/alice || {\n\t echo 'x' >&2\n\t exit 1\n}\n${SHELL:-/bin/sh} << 'marcinDELIMITER2b7c1f3a'\nwget x\n\nsh y\nmarcinDELIMITER2b7c1f3a\n",
        );
        assert_eq!(
            new,
            AtJob {
                uid: Some(1000),
                command: "wget x; sh y".into()
            }
        );
        let old =
            parse("#!/bin/sh\n# atrun uid=0 gid=0\ncd /root || {\n exit 1\n}\n/usr/bin/reboot\n");
        assert_eq!(
            old,
            AtJob {
                uid: Some(0),
                command: "/usr/bin/reboot".into()
            }
        );
        let odd = parse("# no header\necho hi\n");
        assert_eq!(
            odd,
            AtJob {
                uid: None,
                command: "echo hi".into()
            }
        );
    }
}
