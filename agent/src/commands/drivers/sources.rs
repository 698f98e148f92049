//! Readers for the three places kernel modules show up: /proc/modules (one line per loaded
//! module), /sys/module/NAME/ (loaded modules and built-in ones with parameters) and
//! /lib/modules/RELEASE/modules.dep (module files and what each depends on).

use std::collections::HashMap;
use std::path::Path;

use crate::commands::io_message;

/// One module as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Bytes of its core section; unknown for built-in modules.
    pub size: Option<u64>,
    /// `None` when unknown: built in, or a kernel that cannot unload modules.
    pub refcount: Option<u64>,
    /// The loaded modules that use this one.
    pub used_by: Vec<String>,
    /// Live, Loading or Unloading; `None` for built-in modules.
    pub state: Option<String>,
    pub builtin: bool,
    /// Taint flags such as "OE" (out of tree, unsigned); `None` when untainted.
    pub taint: Option<String>,
}

/// Parses `name size refcount used_by state [address] [(taint)]` from /proc/modules.
pub fn parse_proc_modules_line(line: &str) -> Option<Module> {
    let mut fields = line.split_whitespace();
    let name = fields.next().filter(|n| is_module_name(n))?.to_owned();
    let size = fields.next()?.parse().ok()?;
    let refcount = match fields.next()? {
        "-" => None,
        n => Some(n.parse().ok()?),
    };
    let used_by = match fields.next()? {
        "-" => Vec::new(),
        list => {
            let mut users = Vec::new();
            // "a,b," and "[permanent]," (no exit function) are the kernel's notation.
            for user in list
                .split(',')
                .filter(|u| !u.is_empty() && !u.starts_with('['))
            {
                if !is_module_name(user) {
                    return None;
                }
                users.push(user.to_owned());
            }
            users
        }
    };
    let state = fields
        .next()
        .filter(|s| s.chars().all(|c| c.is_ascii_alphabetic()))?
        .to_owned();
    let taint = fields
        .find_map(|f| f.strip_prefix('(')?.strip_suffix(')'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Some(Module {
        name,
        size: Some(size),
        refcount,
        used_by,
        state: Some(state),
        builtin: false,
        taint,
    })
}

fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Files under /sys/module that exist and could not be read, summarised in one message.
#[derive(Debug, Default)]
pub struct FileErrors {
    pub count: u64,
    pub first: Option<String>,
}

impl FileErrors {
    fn push(&mut self, message: String) {
        self.count += 1;
        self.first.get_or_insert(message);
    }
}

/// Reads /sys/module/NAME/. A loadable module has `initstate` (and `refcnt` when the kernel can
/// unload modules); a built-in one has neither, only its parameters or version.
pub fn read_sys_module(dir: &Path, name: &str, errors: &mut FileErrors) -> Module {
    let mut read = |file: &str| -> Option<String> {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                errors.push(io_message("read", &path, &e));
                None
            }
        }
    };
    let initstate = read("initstate");
    let refcnt = read("refcnt");
    let coresize = read("coresize");
    let taint = read("taint").filter(|t| !t.is_empty());
    let builtin = initstate.is_none() && refcnt.is_none();
    let mut number = |file: &str, text: Option<String>| {
        let text = text?;
        let value = text.parse().ok();
        if value.is_none() {
            errors.push(format!(
                "'{}' holds '{text}', not a number",
                dir.join(file).display()
            ));
        }
        value
    };
    let refcount = number("refcnt", refcnt);
    let size = number("coresize", coresize);
    let holders_dir = dir.join("holders");
    let used_by = match std::fs::read_dir(&holders_dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            names
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            errors.push(io_message("list", &holders_dir, &e));
            Vec::new()
        }
    };
    Module {
        name: name.to_owned(),
        size,
        refcount,
        used_by,
        state: initstate.map(|s| state_name(&s)),
        builtin,
        taint,
    }
}

/// `initstate` words in /proc/modules' spelling.
fn state_name(initstate: &str) -> String {
    match initstate {
        "live" => "Live".to_owned(),
        "coming" => "Loading".to_owned(),
        "going" => "Unloading".to_owned(),
        "unformed" => "Unformed".to_owned(),
        other => other.to_owned(),
    }
}

/// One line of modules.dep: a module file (relative to /lib/modules/RELEASE unless absolute) and
/// the names of the modules it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    pub file: String,
    pub depends: Vec<String>,
}

/// modules.dep parsed by module name, with the lines that did not parse.
#[derive(Debug, Default)]
pub struct ModulesDep {
    pub by_name: HashMap<String, DepEntry>,
    pub malformed: u64,
    pub first_malformed: Option<String>,
}

/// Parses `kernel/a/b.ko.zst: kernel/c.ko kernel/d.ko.xz` lines.
pub fn parse_modules_dep(text: &str) -> ModulesDep {
    let mut dep = ModulesDep::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').and_then(|(file, deps)| {
            let name = module_name(file.trim())?;
            let depends = deps
                .split_whitespace()
                .map(module_name)
                .collect::<Option<Vec<_>>>()?;
            Some((
                name,
                DepEntry {
                    file: file.trim().to_owned(),
                    depends,
                },
            ))
        });
        match parsed {
            Some((name, entry)) => {
                // The first file for a name wins, as modprobe's search order does.
                dep.by_name.entry(name).or_insert(entry);
            }
            None => {
                dep.malformed += 1;
                dep.first_malformed.get_or_insert_with(|| {
                    let quoted: String = line.chars().take(120).collect();
                    format!("line {}: '{quoted}'", i + 1)
                });
            }
        }
    }
    dep
}

/// The module name of a module file: its base name without `.ko` and a compression suffix, with
/// '-' read as '_' as the kernel does.
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = [".ko", ".ko.gz", ".ko.xz", ".ko.zst"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))?;
    is_module_name(stem).then(|| stem.replace('-', "_"))
}

#[cfg(test)]
mod tests;
