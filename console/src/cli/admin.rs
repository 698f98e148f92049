//! `lr admin ...` (clap derive): tenants, a tenant's settings, users and their roles, API tokens,
//! device groups, enrolment tokens and enrolled devices. What each does is in [`crate::admin`]; values are checked here, before anything
//! is sent, so a mistake is a usage error (exit 2).

use api_model::RoleGrant;
use clap::{Args, Subcommand, ValueEnum};
use commands::Role;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The platform's tenants (role: platform-admin)
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Your tenant's settings and session limits (role: tenant-admin)
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The tenant's users and their roles (role: tenant-admin)
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens: list, create (shown once), revoke (role: tenant-admin)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Device groups, which roles can be scoped to (role: tenant-admin)
    #[command(subcommand)]
    Group(GroupCommand),
    /// Enrolment tokens, with which devices enrol: list, create (shown once), revoke (role:
    /// tenant-admin)
    #[command(subcommand)]
    Enrolment(EnrolmentCommand),
    /// Enrolled devices: list, show, revoke, allow to enrol again; the groups a device is in
    /// (role: tenant-admin)
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List the tenants with their settings
    List,
    /// Show a tenant and its settings
    Show {
        /// Tenant id
        id: String,
    },
    /// Create a tenant with the default settings
    #[command(after_help = "Example: lr admin tenant create acme --name \"ACME Corp\"")]
    Create {
        /// Tenant id: 1 to 64 of A-Z a-z 0-9 _ -
        id: String,
        /// Display name [default: the id]
        #[arg(long)]
        name: Option<String>,
    },
    /// Change a tenant's name, settings or session limits (only the flags given)
    #[command(
        override_usage = "lr admin tenant update <ID> <SETTING>... (one or more of the settings below)",
        after_help = "Example: lr admin tenant update acme --live-response off --max-sessions 50"
    )]
    Update {
        /// Tenant id
        id: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Remove a tenant with its users, tokens and groups
    Remove {
        /// Tenant id
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show your tenant's settings and session limits
    Show,
    /// Change your tenant's name, settings or session limits (only the flags given)
    #[command(
        override_usage = "lr admin settings update <SETTING>... (one or more of the settings below)",
        after_help = "Example: lr admin settings update --idle-timeout 900"
    )]
    Update {
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// What `tenant update` and `settings update` may change: at least one.
#[derive(Debug, Clone, Default, Args)]
#[group(required = true, multiple = true)]
pub struct SettingsArgs {
    /// Display name
    #[arg(long)]
    pub name: Option<String>,
    /// Whether analysts may open sessions at all
    #[arg(long, value_enum, value_name = "on|off")]
    pub live_response: Option<Switch>,
    /// Whether `run` may start scripts that are not signed
    #[arg(long, value_enum, value_name = "on|off")]
    pub unsigned_scripts: Option<Switch>,
    /// A session without analyst activity this long ends (1 to 604800: a second to a week)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub idle_timeout: Option<u64>,
    /// Most live sessions in the tenant
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u32>,
    /// Most live sessions per user
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<u32>,
    /// Device groups where remediation is allowed, comma-separated ("" for none)
    #[arg(long, value_name = "GROUP,...", value_parser = parse_groups)]
    pub remediation_groups: Option<GroupList>,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn on(self) -> bool {
        self == Switch::On
    }
}

/// A comma-separated list of group names, each checked; empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupList(pub Vec<String>);

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List the tenant's users and their roles
    List,
    /// Show a user and its roles
    Show {
        /// User name
        name: String,
    },
    /// Create a user with roles
    #[command(
        after_help = "Example: lr admin user create alice@acme.example --role responder-basic --role responder-advanced:servers,dbs"
    )]
    Create {
        /// User name: 1 to 128 of A-Z a-z 0-9 . _ - @ +
        name: String,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Replace a user's roles with the ones given
    #[command(after_help = "Example: lr admin user update alice@acme.example --role viewer")]
    Update {
        /// User name
        name: String,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Remove a user and its tokens
    Remove {
        /// User name
        name: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RoleArgs {
    /// A role, on every device of the tenant or, after a colon, only on the devices of these
    /// groups; repeat for several. Roles: viewer, responder-basic, responder-advanced,
    /// library-manager, tenant-admin, platform-admin
    #[arg(long = "role", value_name = "ROLE[:GROUP,...]", required = true, value_parser = parse_grant)]
    pub roles: Vec<RoleGrant>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List the tenant's tokens (never the tokens themselves)
    List {
        /// Only this user's tokens
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Make a token for a user; it is printed this once and cannot be shown again
    #[command(
        after_help = "Example: lr admin token create alice@acme.example --description laptop --expires-in 2592000"
    )]
    Create {
        /// User name
        user: String,
        /// What the token is for (up to 200 characters)
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        /// Seconds until the token stops working [default: never]
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        expires_in: Option<u64>,
    },
    /// Revoke a token: every broker refuses it from then on
    Revoke {
        /// Token id, as `lr admin token list` shows it
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the tenant's device groups
    List,
    /// Show a device group: its devices and rules
    Show {
        /// Group name
        name: String,
    },
    /// Create or replace a device group: the devices and rules given, nothing else
    #[command(
        after_help = "Example: lr admin group set servers --device db-01 --hostname 'web-*' --device-glob 'srv-??' --tag pci"
    )]
    Set {
        /// Group name: 1 to 64 of A-Z a-z 0-9 _ -
        #[arg(value_parser = parse_group_name)]
        name: String,
        /// A device, by id; repeat for several
        #[arg(long = "device", value_name = "ID")]
        devices: Vec<String>,
        /// Every device whose hostname matches this glob (`*`, `?`); repeat for several
        #[arg(long = "hostname", value_name = "GLOB")]
        hostnames: Vec<String>,
        /// Every device whose id matches this glob (`*`, `?`); repeat for several
        #[arg(long = "device-glob", value_name = "GLOB")]
        device_globs: Vec<String>,
        /// Every device whose agent carries this tag (its config's `tags`); repeat for several
        #[arg(long = "tag", value_name = "TAG", value_parser = parse_group_name)]
        tags: Vec<String>,
    },
    /// Remove a device group
    Remove {
        /// Group name
        name: String,
    },
}

/// Longest validity of an enrolment token the broker grants: 30 days.
const MAX_ENROLMENT_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Subcommand)]
pub enum EnrolmentCommand {
    /// List the tenant's enrolment tokens: uses, expiry, revocation (never the tokens themselves)
    List,
    /// Make an enrolment token; it is printed this once, with the `lr-agent enroll` line to run
    /// on a device
    #[command(
        after_help = "Example: lr admin enrolment create --description \"web farm\" --max-uses 20 --group servers --expires-in 86400"
    )]
    Create {
        /// Seconds until the token stops working, at most 2592000 (30 days) [default: a day]
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=MAX_ENROLMENT_SECS))]
        expires_in: Option<u64>,
        /// How many devices may enrol with it, 1 to 100000 [default: 1]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_uses: Option<u32>,
        /// A device group of the tenant that every device enrolled with it joins
        #[arg(long, value_name = "NAME", value_parser = parse_group_name)]
        group: Option<String>,
        /// What the token is for (up to 200 characters)
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// Revoke an enrolment token: no device can enrol with it from then on (devices it enrolled
    /// stay enrolled)
    Revoke {
        /// Enrolment token id, as `lr admin enrolment list` shows it
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List the tenant's enrolled devices: state, certificate expiry, last seen
    List,
    /// Show a device's enrolment: state, certificate, when it enrolled and was last seen
    Show {
        /// Device id, as `lr admin device list` shows it
        id: String,
    },
    /// Revoke a device: its stream is dropped, its sessions end, and its certificate is refused
    /// until an admin allows it to enrol again
    Revoke {
        /// Device id
        id: String,
    },
    /// Allow a device id to enrol once more (after a revocation, or on a reinstalled machine)
    AllowReenrolment {
        /// Device id
        id: String,
    },
    /// The groups a device is in, by list or by rule
    Groups {
        /// Device id, as `lr devices` shows it
        id: String,
    },
}

/// `responder-advanced` or `responder-advanced:servers,dbs`: a role id, and optionally the
/// groups it is scoped to.
pub fn parse_grant(text: &str) -> Result<RoleGrant, String> {
    let (role, groups) = match text.split_once(':') {
        Some((role, groups)) => (role, Some(groups)),
        None => (text, None),
    };
    let role = role.trim();
    let role: Role = role.parse().map_err(|_| {
        let known = Role::ALL.map(Role::id);
        let suggestion = commands::closest(role, known)
            .map(|id| format!(" (did you mean {id}?)"))
            .unwrap_or_default();
        format!(
            "unknown role '{role}'{suggestion}; roles are {}",
            known.join(", ")
        )
    })?;
    let groups = match groups {
        None => Vec::new(),
        Some(list) => {
            let GroupList(groups) = parse_groups(list)?;
            if groups.is_empty() {
                return Err(format!(
                    "no group after '{role}:'; write {role}:group1,group2, or {role} alone for \
                     every device"
                ));
            }
            groups
        }
    };
    Ok(RoleGrant {
        role: role.id().to_owned(),
        groups,
    })
}

/// `a,b,c`: group names, each checked; an empty text is no group.
fn parse_groups(text: &str) -> Result<GroupList, String> {
    if text.trim().is_empty() {
        return Ok(GroupList::default());
    }
    text.split(',')
        .map(|name| parse_group_name(name.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(GroupList)
}

/// A device group's name: the rule of tenant and device ids.
fn parse_group_name(name: &str) -> Result<String, String> {
    ids::tenant(name)
        .map(|()| name.to_owned())
        .map_err(|e| format!("invalid group name {name:?}: {}; {}", e.reason, e.rule()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::cli::{Cli, Command};

    fn grant(role: &str, groups: &[&str]) -> RoleGrant {
        RoleGrant {
            role: role.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn grants_are_a_role_and_optional_groups() {
        assert_eq!(parse_grant("viewer"), Ok(grant("viewer", &[])));
        assert_eq!(
            parse_grant("responder-advanced:servers, dbs"),
            Ok(grant("responder-advanced", &["servers", "dbs"]))
        );
        for role in Role::ALL {
            assert_eq!(parse_grant(role.id()), Ok(grant(role.id(), &[])));
        }
    }

    #[test]
    fn bad_grants_say_what_is_wrong() {
        let err = parse_grant("responder-advnced").unwrap_err();
        assert!(
            err.starts_with(
                "unknown role 'responder-advnced' (did you mean responder-advanced?); roles are \
                 viewer, responder-basic,"
            ),
            "{err}"
        );
        let err = parse_grant("admin").unwrap_err();
        assert!(err.contains("roles are viewer"), "{err}");
        let err = parse_grant("viewer:").unwrap_err();
        assert!(err.starts_with("no group after 'viewer:'"), "{err}");
        let err = parse_grant("viewer:a,,b").unwrap_err();
        assert!(err.starts_with("invalid group name \"\""), "{err}");
        let err = parse_grant("viewer:web.prod").unwrap_err();
        assert!(err.contains("1 to 64 characters"), "{err}");
    }

    #[test]
    fn remediation_groups_may_be_emptied() {
        assert_eq!(parse_groups(""), Ok(GroupList::default()));
        assert_eq!(
            parse_groups("a,b"),
            Ok(GroupList(vec!["a".to_owned(), "b".to_owned()]))
        );
        assert!(parse_groups("a b").is_err());
    }

    #[test]
    fn admin_command_lines() {
        let cli = Cli::try_parse_from([
            "lr",
            "--tenant",
            "demo",
            "admin",
            "user",
            "create",
            "alice",
            "--role",
            "responder-basic",
            "--role",
            "responder-advanced:servers",
        ])
        .unwrap();
        assert_eq!(cli.tenant.as_deref(), Some("demo"));
        let Command::Admin(AdminCommand::User(UserCommand::Create { name, roles })) = cli.command
        else {
            panic!("not user create")
        };
        assert_eq!(name, "alice");
        assert_eq!(
            roles.roles,
            [
                grant("responder-basic", &[]),
                grant("responder-advanced", &["servers"])
            ]
        );

        let cli = Cli::try_parse_from([
            "lr",
            "admin",
            "tenant",
            "update",
            "acme",
            "--live-response",
            "off",
            "--idle-timeout",
            "900",
            "--remediation-groups",
            "",
            "--tenant",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.tenant.as_deref(), Some("x"), "global after the command");
        let Command::Admin(AdminCommand::Tenant(TenantCommand::Update { id, settings })) =
            cli.command
        else {
            panic!("not tenant update")
        };
        assert_eq!(id, "acme");
        assert_eq!(settings.live_response, Some(Switch::Off));
        assert_eq!(settings.idle_timeout, Some(900));
        assert_eq!(settings.remediation_groups, Some(GroupList::default()));

        let cli = Cli::try_parse_from([
            "lr",
            "admin",
            "enrolment",
            "create",
            "--expires-in",
            "2592000",
            "--max-uses",
            "20",
            "--group",
            "servers",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Enrolment(EnrolmentCommand::Create {
            expires_in,
            max_uses,
            group,
            description,
        })) = cli.command
        else {
            panic!("not enrolment create")
        };
        assert_eq!(
            (expires_in, max_uses, group.as_deref(), description.as_str()),
            (Some(2_592_000), Some(20), Some("servers"), "")
        );
        let cli =
            Cli::try_parse_from(["lr", "admin", "device", "allow-reenrolment", "web-07"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Device(DeviceCommand::AllowReenrolment { id })) if id == "web-07"
        ));
    }

    #[test]
    fn admin_usage_errors() {
        for args in [
            &["lr", "admin"][..],
            &["lr", "admin", "user", "create", "alice"],
            &["lr", "admin", "user", "create", "alice", "--role", "root"],
            &["lr", "admin", "user", "update", "alice"],
            &[
                "lr",
                "admin",
                "tenant",
                "update",
                "acme",
                "--live-response",
                "maybe",
            ],
            &[
                "lr",
                "admin",
                "tenant",
                "update",
                "acme",
                "--idle-timeout",
                "0",
            ],
            &["lr", "admin", "settings", "update", "--max-sessions", "-1"],
            &[
                "lr",
                "admin",
                "token",
                "create",
                "alice",
                "--expires-in",
                "0",
            ],
            &["lr", "admin", "token", "revoke"],
            &["lr", "admin", "group", "set", "web servers"],
            &["lr", "admin", "device", "groups"],
            &["lr", "admin", "enrolment", "create", "--expires-in", "0"],
            &[
                "lr",
                "admin",
                "enrolment",
                "create",
                "--expires-in",
                "2592001",
            ],
            &["lr", "admin", "enrolment", "create", "--max-uses", "0"],
            &["lr", "admin", "enrolment", "create", "--max-uses", "100001"],
            &["lr", "admin", "enrolment", "create", "--group", "a,b"],
            &["lr", "admin", "enrolment", "revoke"],
            &["lr", "admin", "device", "revoke"],
            &["lr", "admin", "device", "show"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    proptest! {
        /// Whatever is typed, a grant either names a role of the table with checked groups, or
        /// is refused with a message.
        #[test]
        fn grants_parse_or_are_refused(text in "[a-z:,.-]{0,30}") {
            match parse_grant(&text) {
                Ok(g) => {
                    prop_assert!(g.role.parse::<Role>().is_ok());
                    prop_assert!(g.groups.iter().all(|n| ids::tenant(n).is_ok()));
                }
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }
}
