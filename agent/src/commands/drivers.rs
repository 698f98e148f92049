//! `drivers`: the loaded kernel modules, with who uses them, what they depend on and their file.
//!
//! The list comes from /proc/modules. Where that file is absent (containers, kernels without
//! module support) it comes from /sys/module/*, which also shows built-in modules that have
//! parameters (`"builtin": true`, no size, refcount or state); `source` says which was read.
//! Module files and dependencies come from /lib/modules/RELEASE/modules.dep when it exists.
//!
//! Output:
//! ```json
//! {"source": "/proc/modules" | "/sys/module" | null, "kernel_release": "6.1.0-18-amd64" | null,
//!  "modules": [{"name": "nf_nat", "size": 57344 | null, "refcount": 2 | null,
//!               "used_by": ["xt_MASQUERADE"], "depends_on": ["nf_conntrack"] | null,
//!               "state": "Live|Loading|Unloading" | null, "builtin": false,
//!               "taint": "OE" | null, "path": "/lib/modules/.../nf_nat.ko.zst" | null}],
//!  "truncated": false, "more": 0, "errors": ["..."]}
//! ```
//! `used_by` are the loaded modules holding this one; `depends_on` are the modules its file needs
//! (null when modules.dep does not list it, and for built-in modules); `taint` is the kernel's
//! flags for the module (O out of tree, E unsigned, ...). Modules are sorted by name; at most
//! [`MAX_MODULES`] are listed. Nothing here fails the command: unreadable or malformed input is
//! skipped and said in `errors`, and with neither source present the list is empty.

mod sources;

use std::path::{Path, PathBuf};

use ::commands::Invocation;
use serde_json::{Value, json};

use super::{CommandContext, CommandError, CommandResult, blocking, io_message};
use crate::sys::procfs::ProcRoot;
use sources::{FileErrors, Module, ModulesDep};

/// The most modules listed.
pub const MAX_MODULES: usize = 10_000;

/// Where the kernel's files are mounted, so tests can point at fixture trees.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: ProcRoot,
    pub sys: PathBuf,
    pub lib_modules: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            proc: ProcRoot::default(),
            sys: PathBuf::from("/sys"),
            lib_modules: PathBuf::from("/lib/modules"),
        }
    }
}

const PROC_SOURCE: &str = "/proc/modules";
const SYS_SOURCE: &str = "/sys/module";

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || scan(&ctx, &Roots::default(), MAX_MODULES)).await
}

/// Lists the modules under `roots`, at most `max` of them.
pub(crate) fn scan(ctx: &CommandContext, roots: &Roots, max: usize) -> CommandResult {
    let release = std::fs::read_to_string(roots.proc.path().join("sys/kernel/osrelease"))
        .ok()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let mut listing = Listing {
        release,
        max,
        ..Listing::default()
    };
    let proc_modules = roots.proc.path().join("modules");
    match std::fs::read_to_string(&proc_modules) {
        Ok(text) => listing.read_proc(&proc_modules, &text),
        Err(e) => {
            let proc_missing = e.kind() == std::io::ErrorKind::NotFound;
            if !proc_missing {
                listing.errors.push(format!(
                    "{}; listing {} instead",
                    io_message("read", &proc_modules, &e),
                    SYS_SOURCE
                ));
            }
            listing.read_sys(ctx, &roots.sys.join("module"), proc_missing, &proc_modules);
        }
    }
    if ctx.is_stopped() {
        return Err(CommandError::Interrupted {
            partial: Some(listing.render(None)),
        });
    }
    let dep = listing.modules_dep(&roots.lib_modules);
    let value = listing.render(dep.as_ref().map(|(dir, dep)| (dir.as_path(), dep)));
    Ok(value.into())
}

#[derive(Default)]
struct Listing {
    source: Option<&'static str>,
    release: Option<String>,
    modules: Vec<Module>,
    more: u64,
    max: usize,
    errors: Vec<String>,
}

impl Listing {
    fn keep(&mut self, module: Module) {
        if self.modules.len() < self.max {
            self.modules.push(module);
        } else {
            self.more += 1;
        }
    }

    fn read_proc(&mut self, path: &Path, text: &str) {
        self.source = Some(PROC_SOURCE);
        let mut malformed = 0u64;
        let mut first = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match sources::parse_proc_modules_line(line) {
                Some(m) => self.keep(m),
                None => {
                    malformed += 1;
                    first.get_or_insert_with(|| {
                        let quoted: String = line.chars().take(120).collect();
                        format!("line {}: '{quoted}'", i + 1)
                    });
                }
            }
        }
        if let Some(first) = first {
            self.errors.push(format!(
                "skipped {malformed} malformed line{} of '{}' (first, {first})",
                if malformed == 1 { "" } else { "s" },
                path.display()
            ));
        }
    }

    fn read_sys(
        &mut self,
        ctx: &CommandContext,
        dir: &Path,
        proc_missing: bool,
        proc_modules: &Path,
    ) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && proc_missing => {
                self.errors.push(format!(
                    "no module list: neither '{}' nor '{}' exists (a kernel without module support, or /proc and /sys not mounted)",
                    proc_modules.display(),
                    dir.display()
                ));
                return;
            }
            Err(e) => {
                self.errors.push(io_message("list", dir, &e));
                return;
            }
        };
        self.source = Some(SYS_SOURCE);
        let mut names: Vec<String> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                // Each module is a directory; follow a symlink the way the kernel never makes one.
                std::fs::metadata(e.path()).ok()?.is_dir().then_some(())?;
                e.file_name().into_string().ok()
            })
            .collect();
        names.sort();
        let mut file_errors = FileErrors::default();
        for name in names {
            if ctx.is_stopped() {
                break;
            }
            if self.modules.len() >= self.max {
                self.more += 1;
                continue;
            }
            let module = sources::read_sys_module(&dir.join(&name), &name, &mut file_errors);
            self.keep(module);
        }
        if let Some(first) = file_errors.first {
            self.errors.push(format!(
                "could not read {} file{} under '{}' (first: {first}); those fields are null",
                file_errors.count,
                if file_errors.count == 1 { "" } else { "s" },
                dir.display()
            ));
        }
    }

    /// Reads modules.dep for the running kernel when some module could have a file; says in
    /// `errors` why paths are unknown otherwise.
    fn modules_dep(&mut self, lib_modules: &Path) -> Option<(PathBuf, ModulesDep)> {
        if self.modules.iter().all(|m| m.builtin) {
            return None;
        }
        let Some(release) = &self.release else {
            self.errors.push(
                "kernel release unknown (no /proc/sys/kernel/osrelease): module files and dependencies are not shown"
                    .to_owned(),
            );
            return None;
        };
        let dir = lib_modules.join(release);
        let path = dir.join("modules.dep");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.errors.push(format!(
                    "'{}' does not exist: module files and dependencies are not shown",
                    path.display()
                ));
                return None;
            }
            Err(e) => {
                self.errors.push(format!(
                    "{}; module files and dependencies are not shown",
                    io_message("read", &path, &e)
                ));
                return None;
            }
        };
        let dep = sources::parse_modules_dep(&text);
        if let Some(first) = &dep.first_malformed {
            self.errors.push(format!(
                "skipped {} malformed line{} of '{}' (first, {first})",
                dep.malformed,
                if dep.malformed == 1 { "" } else { "s" },
                path.display()
            ));
        }
        Some((dir, dep))
    }

    /// `dep` is modules.dep with the directory its relative paths start from.
    fn render(mut self, dep: Option<(&Path, &ModulesDep)>) -> Value {
        self.modules.sort_by(|a, b| a.name.cmp(&b.name));
        let modules: Vec<Value> = self
            .modules
            .iter()
            .map(|m| {
                let entry = dep
                    .filter(|_| !m.builtin)
                    .and_then(|(dir, d)| Some((dir, d.by_name.get(&m.name)?)));
                json!({
                    "name": m.name,
                    "size": m.size,
                    "refcount": m.refcount,
                    "used_by": m.used_by,
                    "depends_on": entry.map(|(_, e)| &e.depends),
                    "state": m.state,
                    "builtin": m.builtin,
                    "taint": m.taint,
                    "path": entry.map(|(dir, e)| dir.join(&e.file).display().to_string()),
                })
            })
            .collect();
        if self.more > 0 {
            self.errors.push(format!(
                "{} more modules not listed: the limit is {}",
                self.more, self.max
            ));
        }
        json!({
            "source": self.source,
            "kernel_release": self.release,
            "modules": modules,
            "truncated": self.more > 0,
            "more": self.more,
            "errors": self.errors,
        })
    }
}

#[cfg(test)]
mod tests;
