//! The command table. Names, syntax and behaviour follow COMMANDS.md and the seed documents.

use std::time::Duration;

/// The role a command needs: `responder-basic` or `responder-advanced` (see the `access` crate).
pub use access::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Windows,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
        }
    }
}

/// Where a command runs: on the device (through the broker), on the brokers (the library), as a
/// transfer the brokers drive with the device's agent (the only kind that can run in the
/// background), or in the console alone. A broker or transfer command names what the brokers do
/// for it, so the broker handles every one exhaustively: a new one that is not handled does not
/// compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    Device,
    Broker(BrokerCommand),
    Transfer(TransferCommand),
    Console,
}

/// What the brokers run themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerCommand {
    /// List the tenant's library.
    Library,
}

/// The transfers the brokers drive with the device's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferCommand {
    /// A file from the device (`getfile`, `download`).
    Getfile,
    /// A library file to the device.
    Putfile,
}

impl Runs {
    /// A transfer, which alone may run in the background.
    pub fn is_transfer(self) -> bool {
        matches!(self, Runs::Transfer(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Table => "table",
            Output::Json => "json",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A path on the device.
    Path,
    /// A name, a glob, an id.
    Text,
    /// A whole number of at least 1.
    Count,
    /// `true` or `false`.
    Bool,
}

/// A parameter with a value: given in its position, or anywhere as `-name value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
    /// False for parameters accepted only as `-name value`.
    pub positional: bool,
    pub help: &'static str,
}

/// A parameter without a value, such as `-hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub help: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub role: Role,
    pub runs: Runs,
    pub platforms: &'static [Platform],
    pub summary: &'static str,
    pub params: &'static [Param],
    pub flags: &'static [Flag],
    /// A command that must have run on the same target first (e.g. `fileinfo` before `getfile`).
    pub prerequisite: Option<&'static str>,
    pub output: Output,
    pub timeout: Duration,
    pub examples: &'static [&'static str],
}

impl Spec {
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn flag(&self, name: &str) -> Option<&'static Flag> {
        self.flags
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn supports(&self, platform: Platform) -> bool {
        self.platforms.contains(&platform)
    }

    /// `dir [path]`, `findfile <name> [-path <path>] [-max <count>] [-nocase]`.
    pub fn usage(&self) -> String {
        let mut usage = self.name.to_string();
        for p in self.params.iter().filter(|p| p.positional) {
            usage.push_str(&if p.required {
                format!(" <{}>", p.name)
            } else {
                format!(" [{}]", p.name)
            });
        }
        for p in self.params.iter().filter(|p| !p.positional) {
            usage.push_str(&format!(" [-{} <{}>]", p.name, kind_name(p.kind)));
        }
        for f in self.flags {
            usage.push_str(&format!(" [-{}]", f.name));
        }
        usage
    }
}

fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Path => "path",
        ParamKind::Text => "text",
        ParamKind::Count => "count",
        ParamKind::Bool => "true|false",
    }
}

const TEN_MINUTES: Duration = Duration::from_secs(10 * 60);
const THIRTY_MINUTES: Duration = Duration::from_secs(30 * 60);
const LINUX: &[Platform] = &[Platform::Linux];
const WINDOWS: &[Platform] = &[Platform::Windows];

const fn param(name: &'static str, kind: ParamKind, required: bool, help: &'static str) -> Param {
    Param {
        name,
        kind,
        required,
        positional: true,
        help,
    }
}

const fn named(name: &'static str, kind: ParamKind, help: &'static str) -> Param {
    Param {
        name,
        kind,
        required: false,
        positional: false,
        help,
    }
}

const fn device(name: &'static str, summary: &'static str) -> Spec {
    Spec {
        name,
        role: Role::ResponderBasic,
        runs: Runs::Device,
        platforms: LINUX,
        summary,
        params: &[],
        flags: &[],
        prerequisite: None,
        output: Output::Table,
        timeout: TEN_MINUTES,
        examples: &[],
    }
}

const fn broker(command: BrokerCommand, name: &'static str, summary: &'static str) -> Spec {
    Spec {
        runs: Runs::Broker(command),
        ..device(name, summary)
    }
}

const fn transfer(command: TransferCommand, name: &'static str, summary: &'static str) -> Spec {
    Spec {
        runs: Runs::Transfer(command),
        ..device(name, summary)
    }
}

const GETFILE_PARAMS: &[Param] = &[param(
    "path",
    ParamKind::Path,
    true,
    "the file to download, absolute or relative",
)];

/// `getfile` and its alias `download`: advanced commands, as in the reference product.
const fn getfile(name: &'static str, examples: &'static [&'static str]) -> Spec {
    Spec {
        role: Role::ResponderAdvanced,
        params: GETFILE_PARAMS,
        flags: &[Flag {
            name: "auto",
            help: "run fileinfo first instead of requiring it",
        }],
        prerequisite: Some("fileinfo"),
        output: Output::Json,
        timeout: THIRTY_MINUTES,
        examples,
        ..transfer(
            TransferCommand::Getfile,
            name,
            "download a file from the device (3 GB limit); end the line with & to run it in the background",
        )
    }
}

const fn console(name: &'static str, summary: &'static str) -> Spec {
    Spec {
        runs: Runs::Console,
        ..device(name, summary)
    }
}

/// Every command, in the order `help` lists them.
pub static TABLE: &[Spec] = &[
    Spec {
        params: &[param(
            "path",
            ParamKind::Path,
            true,
            "the directory to change to, absolute or relative",
        )],
        examples: &["cd /var/log", "cd ..", "cd \"/home/a b\""],
        ..device("cd", "change the session's working directory on the device")
    },
    console("cls", "clear the console screen"),
    Spec {
        examples: &["connections", "connections -output json > sockets.json"],
        ..device(
            "connections",
            "TCP, UDP and unix sockets with their state, addresses and owning process",
        )
    },
    Spec {
        params: &[param(
            "path",
            ParamKind::Path,
            false,
            "the directory to list (default: the working directory)",
        )],
        examples: &["dir", "dir /etc", "dir -path /tmp -output json"],
        ..device(
            "dir",
            "files and subdirectories with type, size, mode, owner and times",
        )
    },
    getfile(
        "download",
        &[
            "download /var/log/syslog -auto",
            "download /tmp/sample.bin &",
        ],
    ),
    Spec {
        examples: &["drivers", "drivers -output json"],
        ..device(
            "drivers",
            "loaded kernel modules with size, references, dependencies and state",
        )
    },
    Spec {
        params: &[param(
            "id",
            ParamKind::Text,
            true,
            "the job id shown by jobs",
        )],
        examples: &["fg 1"],
        ..console(
            "fg",
            "bring a background job to the foreground with its progress",
        )
    },
    Spec {
        params: &[param("path", ParamKind::Path, true, "the file to describe")],
        examples: &["fileinfo /usr/bin/ssh", "fileinfo \"/tmp/my file\""],
        ..device(
            "fileinfo",
            "size, owner, mode, times, file type and MD5, SHA1, SHA256 of a file",
        )
    },
    Spec {
        params: &[
            param(
                "name",
                ParamKind::Text,
                true,
                "a file name or glob (*, ?, [...])",
            ),
            named("path", ParamKind::Path, "where to start (default /)"),
            named(
                "max",
                ParamKind::Count,
                "stop after this many matches (default 1000)",
            ),
            named(
                "xdev",
                ParamKind::Bool,
                "stay on the starting filesystem (default true)",
            ),
        ],
        flags: &[
            Flag {
                name: "allfs",
                help: "cross into other filesystems (same as -xdev false)",
            },
            Flag {
                name: "nocase",
                help: "match names case-insensitively",
            },
        ],
        timeout: THIRTY_MINUTES,
        examples: &["findfile *.so -path /tmp", "findfile passwd -max 10"],
        ..device(
            "findfile",
            "find files by name or glob under a directory; cancellable",
        )
    },
    getfile(
        "getfile",
        &[
            "getfile /tmp/sample.bin",
            "getfile /var/log/auth.log -auto &",
        ],
    ),
    Spec {
        params: &[param(
            "command",
            ParamKind::Text,
            false,
            "the command to explain",
        )],
        examples: &["help", "help findfile"],
        ..device("help", "list the commands, or explain one")
    },
    console(
        "jobs",
        "this session's background jobs (downloads, uploads) with their progress",
    ),
    Spec {
        role: Role::ResponderAdvanced,
        output: Output::Table,
        examples: &["library", "library -output json"],
        ..broker(
            BrokerCommand::Library,
            "library",
            "the tenant's library of scripts and tools: name, description, size, SHA256, uploader",
        )
    },
    Spec {
        examples: &["persistence", "persistence -output json > persistence.json"],
        ..device(
            "persistence",
            "every known persistence location: cron, systemd, autostart, shell profiles, keys, preload, udev, at",
        )
    },
    Spec {
        flags: &[Flag {
            name: "hash",
            help: "add the SHA256 of each process image",
        }],
        examples: &["processes", "processes -hash -output json"],
        ..device(
            "processes",
            "running processes with user, command line, image, start time, CPU and memory",
        )
    },
    Spec {
        role: Role::ResponderAdvanced,
        params: &[param(
            "name",
            ParamKind::Text,
            true,
            "the library file to copy",
        )],
        flags: &[
            Flag {
                name: "keep",
                help: "keep the file when the device restarts",
            },
            Flag {
                name: "overwrite",
                help: "replace a file of the same name in the working folder",
            },
        ],
        output: Output::Json,
        timeout: THIRTY_MINUTES,
        examples: &["putfile collector.sh", "putfile tool.bin -keep -overwrite"],
        ..transfer(
            TransferCommand::Putfile,
            "putfile",
            "copy a library file to the device's working folder (deleted at restart unless -keep)",
        )
    },
    Spec {
        platforms: WINDOWS,
        params: &[param(
            "key",
            ParamKind::Text,
            false,
            "the registry key to show",
        )],
        ..device("registry", "registry keys and values")
    },
    Spec {
        examples: &["scheduledtasks", "scheduledtasks -output json"],
        ..device(
            "scheduledtasks",
            "cron entries and systemd timers with their next run",
        )
    },
    Spec {
        examples: &["services", "services -output json"],
        ..device(
            "services",
            "systemd services with state, enablement, main pid and command",
        )
    },
    Spec {
        examples: &["startupfolders", "startupfolders -output json"],
        ..device(
            "startupfolders",
            "XDG autostart entries and every user's shell startup files",
        )
    },
    Spec {
        params: &[param("id", ParamKind::Text, true, "the command id")],
        ..console(
            "status",
            "the state and output of a command of this session",
        )
    },
    Spec {
        params: &[param(
            "mode",
            ParamKind::Text,
            false,
            "on or off (default: switch)",
        )],
        examples: &["trace", "trace off"],
        ..console("trace", "switch this session's console logging to debug")
    },
    Spec {
        examples: &["whoami", "whoami -output json"],
        ..console(
            "whoami",
            "who the console's token belongs to: user and tenant",
        )
    },
];

/// Looks a command up by name, case-insensitively.
pub fn find(name: &str) -> Option<&'static Spec> {
    TABLE.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}
