//! The broker's side of the replicated directory ([`cluster::directory`]): the first start's
//! bootstrap, and API tokens minted (shown once, stored as SHA-256 only).
//!
//! Bootstrap: the first node to find the directory empty proposes, in one Raft entry, the
//! platform tenant with its admin and a one-time token, plus what its configuration held before
//! the directory existed (`api.tokens`, imported with their users, and `[tenants.*]` limits).
//! Only the node whose proposal commits writes the admin token, to
//! `<data_dir>/bootstrap-admin-token`, readable by its owner only; it never reaches a log. Later
//! starts import nothing: a configured token the directory does not hold stops the broker with
//! exit code 64 and what to do, and configured limits that differ are reported and ignored (the
//! directory's are the truth, changed with `lr admin`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use access::{Role, RoleGrant};
use backon::{ExponentialBuilder, Retryable};
use cluster::directory::{
    ApiToken, Directory, DirectoryError, DirectoryOp, Import, PLATFORM_TENANT, TOKEN_PREFIX,
};
use cluster::lease::TenantLimits;
use cluster::{ClusterError, LeaseService};
use tokio::sync::watch;

use crate::api::sha256_hex;
use crate::config::BrokerConfig;
use crate::time::now_ms;

/// Where the first node writes the platform admin's one-time token, under its data directory.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-admin-token";
/// The platform admin the bootstrap creates.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Roles of a token imported from the configuration without roles: what every analyst could do
/// before roles existed.
const LEGACY_ROLES: [Role; 3] = [
    Role::ResponderBasic,
    Role::ResponderAdvanced,
    Role::LibraryManager,
];

/// Until a leader answers, at most a second apart (backon's jitter adds up to the delay again).
const DIRECTORY_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_millis(500))
    .without_max_times();

/// A new token: the secret, to show once, and the record the directory keeps.
pub struct Minted {
    pub secret: String,
    pub record: ApiToken,
}

/// A fresh token `lrt_<id>_<secret>` for `user` of `tenant`.
pub fn mint(tenant: &str, user: &str, description: &str, expires_at: Option<u64>) -> Minted {
    let (id, secret) = fresh_secret(TOKEN_PREFIX);
    let record = ApiToken {
        id,
        tenant: tenant.into(),
        user: user.into(),
        sha256: sha256_hex(&secret),
        description: description.into(),
        created_at: now_ms(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    Minted { secret, record }
}

/// A new public id and the whole secret `<prefix><id>_<two random v4 uuids in hex>`.
pub fn fresh_secret(prefix: &str) -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let secret = format!(
        "{prefix}{id}_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    (id, secret)
}

/// How the start's directory check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Waiting,
    Ready,
    /// The configuration holds what the directory refuses; the broker must stop (exit 64).
    Refused(String),
}

/// Bootstraps the directory if nobody has, then checks the configuration against it; runs until
/// a leader answers. The result is published on the returned channel.
pub fn start(config: &BrokerConfig, leases: LeaseService) -> watch::Receiver<Readiness> {
    let (tx, rx) = watch::channel(Readiness::Waiting);
    let config = config.clone();
    tokio::spawn(async move {
        let outcome = match ensure(&config, &leases).await {
            Ok(()) => Readiness::Ready,
            Err(reason) => Readiness::Refused(reason),
        };
        let _ = tx.send(outcome);
    });
    rx
}

async fn ensure(config: &BrokerConfig, leases: &LeaseService) -> Result<(), String> {
    let node = config.node_id;
    let directory = read(leases, node).await;
    if directory.is_bootstrapped() {
        return check(config, &directory);
    }
    let admin = mint(PLATFORM_TENANT, BOOTSTRAP_ADMIN, "bootstrap", None);
    let op = DirectoryOp::Bootstrap {
        admin: BOOTSTRAP_ADMIN.into(),
        token: admin.record.clone(),
        import: imports(config),
    };
    // Proposed again on any failure but a refusal: a second bootstrap is refused as done, so
    // an attempt whose answer was lost cannot apply twice.
    let proposed = (|| leases.change_directory(op.clone()))
        .retry(DIRECTORY_RETRIES)
        .when(|e| !matches!(e, ClusterError::Directory(_)))
        .notify(
            |error, _| tracing::warn!(node, %error, "cannot bootstrap the directory yet; retrying"),
        )
        .await;
    match proposed {
        Ok(_) | Err(ClusterError::Directory(DirectoryError::AlreadyBootstrapped)) => {}
        Err(error) => return Err(format!("cannot bootstrap the directory: {error}")),
    }
    // Whose bootstrap committed: this node's if the directory holds its admin token.
    let directory = read(leases, node).await;
    if directory.token_by_hash(&admin.record.sha256).is_some() {
        let path = config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
        write_secret(&path, &admin.secret).map_err(|e| {
            format!(
                "the directory was bootstrapped, but its admin token could not be written to {}: {e}; recover by bootstrapping a new cluster",
                path.display()
            )
        })?;
        tracing::info!(node, path = %path.display(), "bootstrapped the directory; the platform admin's one-time token is in this file (owner-only)");
        set_limits(config, leases).await;
    }
    check(config, &directory)
}

async fn read(leases: &LeaseService, node: u64) -> Directory {
    (|| leases.directory())
        .retry(DIRECTORY_RETRIES)
        .notify(|error, _| tracing::warn!(node, %error, "cannot read the directory yet; retrying"))
        .await
        .unwrap_or_default()
}

/// What the configuration held before the directory: tenants of its tokens, their users and
/// tokens.
fn imports(config: &BrokerConfig) -> Vec<Import> {
    let mut imports: Vec<Import> = Vec::new();
    for t in &config.api.tokens {
        let index = match imports.iter().position(|i| i.tenant == t.tenant) {
            Some(i) => i,
            None => {
                imports.push(Import {
                    tenant: t.tenant.clone(),
                    users: Vec::new(),
                    tokens: Vec::new(),
                });
                imports.len() - 1
            }
        };
        let import = &mut imports[index];
        if !import.users.iter().any(|(u, _)| *u == t.user) {
            let roles = t.roles.clone().unwrap_or(LEGACY_ROLES.to_vec());
            let grants = roles.into_iter().map(RoleGrant::everywhere).collect();
            import.users.push((t.user.clone(), grants));
        }
        import.tokens.push(ApiToken {
            id: t.token_sha256[..16].to_ascii_lowercase(),
            tenant: t.tenant.clone(),
            user: t.user.clone(),
            sha256: t.token_sha256.to_ascii_lowercase(),
            description: "imported from the configuration".into(),
            created_at: now_ms(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        });
    }
    for tenant in config.tenants.keys() {
        if !imports.iter().any(|i| i.tenant == *tenant) {
            imports.push(Import {
                tenant: tenant.clone(),
                users: Vec::new(),
                tokens: Vec::new(),
            });
        }
    }
    imports
}

async fn set_limits(config: &BrokerConfig, leases: &LeaseService) {
    for (tenant, section) in &config.tenants {
        let limits = TenantLimits {
            max_sessions_per_tenant: section.max_sessions_per_tenant,
            max_sessions_per_user: section.max_sessions_per_user,
        };
        let set = (|| leases.set_tenant_limits(tenant, limits))
            .retry(DIRECTORY_RETRIES)
            .when(ClusterError::is_retryable)
            .await;
        if let Err(error) = set {
            tracing::warn!(%tenant, %error, "cannot import the tenant's session limits; set them with lr admin");
        }
    }
}

/// A configured token the directory does not hold was added after the bootstrap: refused.
fn check(config: &BrokerConfig, directory: &Directory) -> Result<(), String> {
    for (i, t) in config.api.tokens.iter().enumerate() {
        if directory
            .token_by_hash(&t.token_sha256.to_ascii_lowercase())
            .is_none()
        {
            return Err(format!(
                "api.tokens[{i}] ({}/{}) is not in the directory: tokens are imported from the configuration only when a cluster is first started; create it with `lr admin token create` and remove api.tokens from this file",
                t.tenant, t.user
            ));
        }
    }
    if !config.tenants.is_empty() {
        tracing::info!(
            "[tenants] limits in the configuration were imported at bootstrap; the directory's are used (lr admin tenant update)"
        );
    }
    Ok(())
}

/// Writes `secret` to a new file only its owner can read.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_prefix_and_only_their_hash_is_kept() {
        let minted = mint("demo", "a", "laptop", None);
        assert!(
            minted
                .secret
                .starts_with(&format!("{TOKEN_PREFIX}{}_", minted.record.id))
        );
        assert_eq!(minted.record.sha256, sha256_hex(&minted.secret));
        assert!(!format!("{:?}", minted.record).contains(&minted.secret));
        assert_ne!(mint("demo", "a", "", None).secret, minted.secret);
    }

    #[test]
    fn the_secret_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(BOOTSTRAP_TOKEN_FILE);
        write_secret(&path, "lrt_x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "lrt_x\n");
    }
}
