//! uid/gid to names from /etc/passwd and /etc/group, read once per command; numbers when unknown.

use std::collections::HashMap;

/// User and group names by id.
#[derive(Debug, Default, Clone)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// Reads the system's files; a missing or unreadable file just leaves ids unnamed.
    pub fn load() -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Self::parse(&passwd, &group)
    }

    /// Parses passwd and group text (`name:x:id:...`); malformed lines are skipped.
    pub fn parse(passwd: &str, group: &str) -> Self {
        Self {
            users: parse_db(passwd),
            groups: parse_db(group),
        }
    }

    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(String::as_str)
    }

    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(String::as_str)
    }

    pub fn user_or_number(&self, uid: u32) -> String {
        self.user(uid)
            .map_or_else(|| uid.to_string(), str::to_owned)
    }

    pub fn group_or_number(&self, gid: u32) -> String {
        self.group(gid)
            .map_or_else(|| gid.to_string(), str::to_owned)
    }
}

fn parse_db(text: &str) -> HashMap<u32, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            // The first entry for an id wins, as getpwuid does.
            map.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group() {
        let names = Names::parse(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\ntoor:x:0:0::/:/bin/sh\n",
            "root:x:0:\nstaff:x:50:alice\n",
        );
        assert_eq!(names.user(0), Some("root"));
        assert_eq!(names.user(1000), Some("alice"));
        assert_eq!(names.group(50), Some("staff"));
        assert_eq!(names.user_or_number(4242), "4242");
        assert_eq!(names.group_or_number(7), "7");
    }
}
