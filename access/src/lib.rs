//! Who may do what. Six roles, with these ids on the wire and in configuration:
//!
//! | role | may |
//! | --- | --- |
//! | `viewer` | list devices, sessions and command log metadata |
//! | `responder-basic` | open sessions and run basic commands (and all a viewer may) |
//! | `responder-advanced` | run advanced commands: getfile, download, putfile, ... (and all a basic responder may) |
//! | `library-manager` | upload and delete library files (and all a viewer may) |
//! | `tenant-admin` | manage the tenant's users, tokens, device groups and settings (and all a viewer may) |
//! | `platform-admin` | manage tenants; inside a tenant, all a tenant admin may |
//!
//! A user holds [`RoleGrant`]s: a role, optionally scoped to device groups. Pure: no IO.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    ResponderBasic,
    ResponderAdvanced,
    LibraryManager,
    TenantAdmin,
    PlatformAdmin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::ResponderBasic,
        Role::ResponderAdvanced,
        Role::LibraryManager,
        Role::TenantAdmin,
        Role::PlatformAdmin,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::ResponderBasic => "responder-basic",
            Role::ResponderAdvanced => "responder-advanced",
            Role::LibraryManager => "library-manager",
            Role::TenantAdmin => "tenant-admin",
            Role::PlatformAdmin => "platform-admin",
        }
    }

    /// The role directly below this one, whose powers it includes.
    fn includes(self) -> Option<Role> {
        match self {
            Role::Viewer => None,
            Role::ResponderBasic | Role::LibraryManager | Role::TenantAdmin => Some(Role::Viewer),
            Role::ResponderAdvanced => Some(Role::ResponderBasic),
            Role::PlatformAdmin => Some(Role::TenantAdmin),
        }
    }

    /// Whether holding this role gives what `needed` gives.
    pub fn covers(self, needed: Role) -> bool {
        let mut role = Some(self);
        while let Some(r) = role {
            if r == needed {
                return true;
            }
            role = r.includes();
        }
        false
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A role id that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a role; roles are viewer, responder-basic, responder-advanced, library-manager, tenant-admin and platform-admin"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.id() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A role granted to a user: on every device of the tenant, or only on the devices of `groups`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl RoleGrant {
    pub fn everywhere(role: Role) -> Self {
        Self {
            role,
            groups: Vec::new(),
        }
    }
}

/// Whether `grants` give `needed`: anywhere in the tenant (`device_groups` is `None`), or on a
/// device that belongs to `device_groups`.
pub fn allows(grants: &[RoleGrant], needed: Role, device_groups: Option<&[String]>) -> bool {
    grants.iter().any(|g| {
        g.role.covers(needed)
            && (g.groups.is_empty()
                || device_groups
                    .is_some_and(|in_groups| g.groups.iter().any(|x| in_groups.contains(x))))
    })
}

/// Whether `grants` give `needed` on at least one device: enough to be shown the action at all.
pub fn allows_somewhere(grants: &[RoleGrant], needed: Role) -> bool {
    grants.iter().any(|g| g.role.covers(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below_them_and_nothing_else() {
        assert!(Role::ResponderAdvanced.covers(Role::ResponderBasic));
        assert!(Role::ResponderAdvanced.covers(Role::Viewer));
        assert!(Role::PlatformAdmin.covers(Role::TenantAdmin));
        assert!(!Role::TenantAdmin.covers(Role::ResponderBasic));
        assert!(!Role::LibraryManager.covers(Role::ResponderBasic));
        assert!(!Role::ResponderBasic.covers(Role::ResponderAdvanced));
        assert!(!Role::ResponderAdvanced.covers(Role::LibraryManager));
        for role in Role::ALL {
            assert!(role.covers(Role::Viewer) && role.covers(role));
            assert_eq!(role.id().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert!(
            "admin"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("tenant-admin")
        );
    }

    #[test]
    fn a_scoped_grant_covers_only_its_groups() {
        let grants = [
            RoleGrant::everywhere(Role::ResponderBasic),
            RoleGrant {
                role: Role::ResponderAdvanced,
                groups: vec!["servers".into()],
            },
        ];
        let servers = ["servers".to_string()];
        let laptops = ["laptops".to_string()];
        assert!(allows(&grants, Role::ResponderAdvanced, Some(&servers)));
        assert!(!allows(&grants, Role::ResponderAdvanced, Some(&laptops)));
        assert!(!allows(&grants, Role::ResponderAdvanced, None));
        assert!(allows(&grants, Role::ResponderBasic, Some(&laptops)));
        assert!(allows_somewhere(&grants, Role::ResponderAdvanced));
        assert!(!allows_somewhere(&grants, Role::LibraryManager));
    }
}
