//! The live response argument syntax: parameters in their fixed order, `-name value` for any of
//! them out of order, and flags such as `-hash`. Names are case-insensitive, as in the console.

use std::collections::{HashMap, HashSet};

/// The parameters one command accepts.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Value parameters, in positional order; each can also be given as `-name value`.
    pub positional: &'static [&'static str],
    /// Value parameters that are only accepted by name.
    pub named: &'static [&'static str],
    /// Parameters without a value.
    pub flags: &'static [&'static str],
}

impl ArgSpec {
    pub const NONE: ArgSpec = ArgSpec {
        positional: &[],
        named: &[],
        flags: &[],
    };
}

/// Parsed arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    values: HashMap<&'static str, String>,
    flags: HashSet<&'static str>,
}

impl Args {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }
}

/// Parses `args` by `spec`. `--` ends named parameters, so a path starting with '-' can follow it.
pub fn parse(spec: &ArgSpec, args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut next_positional = 0;
    let mut only_positional = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if !only_positional && arg == "--" {
            only_positional = true;
            continue;
        }
        if !only_positional && arg.len() > 1 && arg.starts_with('-') {
            let name = arg[1..].to_ascii_lowercase();
            if let Some(flag) = spec.flags.iter().find(|f| **f == name) {
                out.flags.insert(flag);
                continue;
            }
            let Some(param) = spec
                .positional
                .iter()
                .chain(spec.named)
                .find(|p| **p == name)
            else {
                return Err(format!("unknown parameter '{arg}'"));
            };
            let Some(value) = iter.next() else {
                return Err(format!("parameter '-{param}' needs a value"));
            };
            if out.values.insert(param, value.clone()).is_some() {
                return Err(format!("parameter '-{param}' is given twice"));
            }
            continue;
        }
        // Fill the first positional parameter not already given by name.
        while next_positional < spec.positional.len()
            && out.values.contains_key(spec.positional[next_positional])
        {
            next_positional += 1;
        }
        let Some(param) = spec.positional.get(next_positional) else {
            return Err(format!("unexpected argument '{arg}'"));
        };
        out.values.insert(param, arg.clone());
        next_positional += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
