//! The endpoint agent: holds one gRPC stream to a broker node and runs live response commands.
//!
//! Entry points: [`run`], and [`enrol::enrol`] (`lr-agent enroll`: how a device gets its key,
//! certificate and config). Modules: [`config`] (validated once), `connection` (the stream task,
//! reconnects and certificate renewal), `credentials` (the key and certificate: checked when
//! issued, replaced on disk as a pair), [`authority`] (which signed orders are obeyed: pure),
//! `convert` (the only one that sees protobuf types), `executor` (the task that owns running
//! commands and transfers), [`fencing`] (tokens and idempotency), [`commands`] (one module per
//! command, bound by name to the shared command table), [`transfer`] (getfile: chunk windows the
//! broker pulls; putfile: chunks the broker pushes into the working folder) and [`sys`] (Linux
//! helpers). With the cargo feature `test-hooks`, `testing` holds hooks for tests only.
#![forbid(unsafe_code)]

pub mod authority;
pub mod commands;
pub mod config;
mod connection;
mod convert;
mod credentials;
pub mod enrol;
mod executor;
pub mod fencing;
pub mod model;
pub mod sys;
#[cfg(feature = "test-hooks")]
pub mod testing;
pub mod transfer;

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{
    Config, ConfigError, ConnectionConfig, Overrides, TlsOverrides, TlsPaths, TracingConfig,
    TracingOverrides,
};
pub use connection::{CertificateExpired, TlsMaterial, hostname};
pub use convert::{AgentInfo, PROTOCOL_VERSION};
pub use fencing::DEFAULT_HELD_RESULT_BYTES;

use crate::authority::Authority;
use crate::connection::Link;
use crate::executor::ExecutorHandle;
use crate::fencing::StateStore;
use crate::transfer::put::WorkDir;
use crate::transfer::put::volatile::Volatile;

/// The agent's version, announced in the hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Validates `config` and reads its TLS files: what a binary checks before [`run`] to tell a
/// configuration problem (exit code 64) from a runtime one.
pub fn check(config: &Config) -> Result<TlsMaterial, ConfigError> {
    config.validate()?;
    TlsMaterial::load(&config.tls)
}

/// Where this agent's spans go when `[tracing] otlp_endpoint` is set: as `lr-agent`, named by
/// its tenant and device.
pub fn span_export(config: &Config) -> Option<telemetry::Export> {
    let endpoint = config.tracing.otlp_endpoint.as_deref()?;
    Some(spans_to(endpoint, &config.tenant, &config.device_id))
}

/// Spans of device `device` of `tenant` exported to `endpoint`: what [`span_export`] answers.
pub fn spans_to(endpoint: &str, tenant: &str, device: &str) -> telemetry::Export {
    telemetry::Export {
        endpoint: endpoint.to_owned(),
        service: "lr-agent",
        attributes: vec![
            telemetry::KeyValue::new("service.instance.id", format!("{tenant}/{device}")),
            telemetry::KeyValue::new("lr.tenant", tenant.to_owned()),
            telemetry::KeyValue::new("lr.device_id", device.to_owned()),
        ],
        schedule_delay: None,
    }
}

/// What the hello announces: the commands, `getfile` for chunk requests and `putfile` for put
/// offers.
pub fn capabilities() -> Vec<String> {
    let mut names = commands::names();
    names.push(transfer::CAPABILITY.to_owned());
    names.push(transfer::put::CAPABILITY.to_owned());
    names
}

/// putfile's working folder, after deleting the files put without `keep` if the device restarted
/// since they were put.
async fn start_work_dir(
    config: &Config,
    system_root: &sys::root::SystemRoot,
) -> anyhow::Result<WorkDir> {
    let dir = std::path::absolute(config.work_dir()).map_err(|e| {
        anyhow::anyhow!(
            "cannot resolve the working folder '{}': {e}; set work_dir to an absolute path",
            config.work_dir().display()
        )
    })?;
    let volatile = Volatile::new(&config.state_dir, system_root);
    let (volatile, cleaned) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let cleaned = volatile.clean_at_start(&dir);
            (volatile, cleaned)
        })
        .await?
    };
    match cleaned {
        Ok(c) if c.rebooted => info!(
            work_dir = %dir.display(), deleted = c.deleted.len(),
            "the device restarted: files put without -keep were deleted"
        ),
        Ok(_) => {}
        // Not fatal: the agent must still answer; the files stay until the next start.
        Err(e) => warn!(
            path = %volatile.path().display(), error = %e,
            "cannot check the files put without -keep; none were deleted; fix state_dir's permissions"
        ),
    }
    Ok(WorkDir::new(dir, volatile))
}

/// Runs the agent until `shutdown` resolves: loads the fencing state, connects to the brokers and
/// keeps reconnecting. Returns an error only for what retrying cannot fix (bad config, state_dir
/// unusable, the device's certificate expired: [`CertificateExpired`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    check(&config)?;
    let authority = Authority::new(config.trusted_keys()?, &config.tenant, &config.device_id);
    let (store, state) = StateStore::open(&config.state_dir)?;
    info!(
        device = %config.device_id, tenant = %config.tenant, highest_token = state.highest_token,
        brokers = ?config.brokers, authority_keys = ?config.authority_keys, "agent starting"
    );
    let system_root = sys::root::SystemRoot::new(&config.system_root);
    let work = start_work_dir(&config, &system_root).await?;
    let (executor, executor_task) =
        ExecutorHandle::spawn(store, state, system_root, work, config.held_result_bytes);
    let info = AgentInfo {
        device_id: config.device_id.clone(),
        tenant: config.tenant.clone(),
        hostname: hostname(),
        os: std::env::consts::OS.to_owned(),
        agent_version: VERSION.to_owned(),
        capabilities: capabilities(),
        tags: config.tags.clone(),
    };
    let link = Arc::new(Link {
        config,
        info,
        executor,
        authority: Mutex::new(authority),
    });
    let stop = CancellationToken::new();
    let mut link_task = tokio::spawn(connection::run_link(Arc::clone(&link), stop.clone()));
    let ended = tokio::select! {
        () = shutdown => None,
        ended = &mut link_task => Some(ended),
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            info!("agent stopping");
            stop.cancel();
            link_task.await
        }
    };
    // The last executor handle goes with the link: the executor cancels what still runs and ends,
    // which releases the state directory's lock.
    drop(link);
    let _ = executor_task.await;
    Ok(ended??)
}
