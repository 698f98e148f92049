//! What each subcommand does, on top of the API client, the renderer and the signals.

use std::io::Write;
use std::time::Duration;

use api_model::{CommandState, ErrorCode, TransferKind};
use backon::{ConstantBuilder, Retryable};
use tokio::runtime::Runtime;

use crate::admin;
use crate::api::{Client, List, MAX_LIST_ITEMS};
use crate::cli::{Cli, Command, LibraryCommand, SessionCommand, TransferCommand};
use crate::cmdline;
use crate::config::{self, Layer};
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::jobs::{self, Job, Notifier, Watched};
use crate::library;
use crate::log;
use crate::render::{self, Format};
use crate::repl;
use crate::run::{self, Shape};
use crate::signals::Signals;
use crate::transfer::Started;

/// Retries of closing a session when the broker is briefly unreachable: three attempts.
const CLOSE_RETRIES: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_secs(1))
    .with_max_times(2);

/// Resolves settings from flags, environment and config file, builds the client and runs the
/// command. Everything the user sees on stdout is printed here or below.
pub fn main(cli: Cli) -> Result<Exit, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let flags = Layer::from_flags(
        cli.api_url,
        cli.token,
        cli.tenant,
        cli.ca_cert,
        cli.output,
        cli.downloads_dir,
        cli.insecure_http,
    );
    let env_layer = Layer::from_env(env).map_err(|e| Failure::usage(e.to_string()))?;
    let file_layer = match config::config_path(env) {
        Some((path, required)) => {
            let layer =
                Layer::from_file(&path, required).map_err(|e| Failure::usage(e.to_string()))?;
            if layer.token.is_some() {
                warn_readable_by_others(&path);
            }
            layer
        }
        None => Layer::default(),
    };
    let settings = flags
        .over(env_layer)
        .over(file_layer)
        .validate(cli.command.needs_token())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let api = Client::new(&settings.endpoint)?
        .with_nodes(settings.more_nodes.clone())
        .with_tenant(settings.tenant.clone());
    let setting = settings.output;
    let downloads = settings.downloads_dir.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Unavailable, format!("cannot start the runtime: {e}")))?;

    match cli.command {
        Command::Connect { device } => {
            let signals = rt
                .block_on(async { Signals::install_with_suspend() })
                .map_err(|e| {
                    Failure::new(Exit::Unavailable, format!("cannot watch signals: {e}"))
                })?;
            repl::run(&rt, &api, &device, setting, &downloads, &signals)
        }
        command => one_shot(&rt, &api, command, setting, &downloads),
    }
}

fn one_shot(
    rt: &Runtime,
    api: &Client,
    command: Command,
    setting: Option<Format>,
    downloads: &std::path::Path,
) -> Result<Exit, Failure> {
    let width = render::terminal_width();
    let format = setting.unwrap_or_default();
    rt.block_on(async {
        match command {
            Command::Health => crate::health::run(api, format).await,
            Command::Whoami => {
                let me = api.me().await?;
                print_text(&crate::local::whoami_body(&me, format))
            }
            Command::Devices => print_list(&api.devices().await?, "devices", format, width),
            Command::Sessions => print_list(&api.sessions().await?, "sessions", format, width),
            Command::Exec {
                device,
                wait,
                command_line,
            } => {
                let signals = install_signals()?;
                exec(
                    api,
                    &device,
                    &command_line,
                    wait.wait,
                    setting,
                    downloads,
                    &signals,
                )
                .await
            }
            Command::Session(SessionCommand::Run {
                session_id,
                wait,
                command_line,
            }) => {
                let invocation =
                    cmdline::parse_for_device(&cmdline::line_from_args(&command_line)?)?;
                let signals = install_signals()?;
                let mark = signals.now();
                let outcome = run::run_command(
                    api,
                    &session_id,
                    &cmdline::for_broker(&invocation),
                    Duration::from_secs(wait.wait),
                    &signals,
                    mark,
                )
                .await?;
                finish(
                    api,
                    &invocation,
                    &outcome.command,
                    setting,
                    width,
                    downloads,
                    &signals,
                )
                .await
            }
            Command::Session(SessionCommand::Open { device }) => {
                let opened = api.open_session(&device).await?;
                match format {
                    Format::Json => print_doc(&opened.doc, format, width),
                    Format::Table => print_text(&format!("{}\n", opened.session_id)),
                }
            }
            Command::Session(SessionCommand::Show { session_id }) => {
                print_doc(&api.session(&session_id).await?.doc, format, width)
            }
            Command::Session(SessionCommand::Commands { session_id }) => {
                print_list(&api.commands(&session_id).await?, "commands", format, width)
            }
            Command::Session(SessionCommand::Cancel {
                session_id,
                command_id,
            }) => print_doc(
                &api.cancel(&session_id, &command_id).await?.doc,
                format,
                width,
            ),
            Command::Session(SessionCommand::Close { session_id }) => {
                api.close_session(&session_id).await?;
                let sentence = format!("session {session_id} closed\n");
                print_done(
                    format,
                    width,
                    ("session_id", session_id),
                    "closed",
                    &sentence,
                )
            }
            Command::Library(LibraryCommand::List) => {
                print_list(&api.library().await?, "library files", format, width)
            }
            Command::Library(LibraryCommand::Upload {
                file,
                name,
                description,
                parameters_description,
                overwrite,
            }) => {
                let options = library::Upload {
                    name,
                    description,
                    parameters_description,
                    overwrite,
                };
                let (entry, created) = library::upload(api, &file, &options).await?;
                crate::say!(
                    "lr: {} {} in the library",
                    if created { "added" } else { "replaced" },
                    entry.name
                );
                print_doc(&entry.doc, format, width)
            }
            Command::Library(LibraryCommand::Delete { name }) => {
                library::delete(api, &name).await?;
                let sentence = format!("{name} deleted from the library\n");
                print_done(format, width, ("name", name), "deleted", &sentence)
            }
            Command::Transfer(TransferCommand::List { session_id }) => print_list(
                &api.transfers(&session_id).await?,
                "transfers",
                format,
                width,
            ),
            Command::Transfer(TransferCommand::Show { transfer_id }) => print_doc(
                &api.transfer(&transfer_id, Duration::ZERO).await?.doc,
                format,
                width,
            ),
            Command::Transfer(TransferCommand::Cancel { transfer_id }) => {
                api.cancel_transfer(&transfer_id).await?;
                let sentence = format!("transfer {transfer_id} cancelled\n");
                print_done(
                    format,
                    width,
                    ("transfer_id", transfer_id),
                    "cancelled",
                    &sentence,
                )
            }
            Command::Transfer(TransferCommand::Download { transfer_id }) => {
                let transfer = api.transfer(&transfer_id, Duration::ZERO).await?;
                let started = Started {
                    transfer_id: transfer.transfer_id.clone(),
                    put: transfer.kind == TransferKind::Putfile,
                    name: transfer.name.clone(),
                    size: transfer.size,
                };
                let signals = install_signals()?;
                watch_transfer(api, started, String::new(), format, downloads, &signals).await
            }
            Command::Admin(command) => admin::run(api, command, format, width).await,
            Command::Log { command, args } => log::run(api, command, args, format, width).await,
            Command::Connect { .. } => unreachable!("connect runs the REPL"),
        }
    })
}

pub(crate) fn install_signals() -> Result<Signals, Failure> {
    Signals::install()
        .map_err(|e| Failure::new(Exit::Unavailable, format!("cannot watch signals: {e}")))
}

/// `lr exec`: read the command line, open a session, run it, close the session whatever happened.
/// A mistake in the line is reported before anything is sent.
async fn exec(
    api: &Client,
    device: &str,
    args: &[String],
    wait_secs: u64,
    setting: Option<Format>,
    downloads: &std::path::Path,
    signals: &Signals,
) -> Result<Exit, Failure> {
    let width = render::terminal_width();
    let invocation = cmdline::parse_for_device(&cmdline::line_from_args(args)?)?;
    // Signals since here count: during the open (close at once), the submission or the wait.
    let mark = signals.now();
    let session = api.open_session(device).await?.value.session_id;
    let outcome = if signals.now() != mark {
        Err(Failure::new(
            Exit::CommandFailed,
            "interrupted before the command was submitted",
        ))
    } else {
        run::run_command(
            api,
            &session,
            &cmdline::for_broker(&invocation),
            Duration::from_secs(wait_secs),
            signals,
            mark,
        )
        .await
    };
    // A transfer is followed to its end before the session closes.
    let result = match outcome {
        Ok(outcome) => {
            finish(
                api,
                &invocation,
                &outcome.command,
                setting,
                width,
                downloads,
                signals,
            )
            .await
        }
        Err(failure) => Err(failure),
    };
    close_session(api, &session).await;
    result
}

/// Prints a finished command; a completed getfile, download or putfile is then followed in the
/// foreground (progress bar, Ctrl+C cancels) until the file is saved or on the device.
async fn finish(
    api: &Client,
    invocation: &commands::Invocation,
    command: &crate::api::Command,
    setting: Option<Format>,
    width: Option<u16>,
    downloads: &std::path::Path,
    signals: &Signals,
) -> Result<Exit, Failure> {
    if command.state == CommandState::Completed
        && let Some(started) = Started::from_command(invocation.spec.name, command)
    {
        let line = cmdline::for_broker(invocation);
        let format = cmdline::transfer_format(invocation, setting);
        return watch_transfer(api, started?, line, format, downloads, signals).await;
    }
    report(command, cmdline::format_of(invocation, setting), width)
}

/// Follows one transfer in the foreground and prints how it ended.
async fn watch_transfer(
    api: &Client,
    started: Started,
    line: String,
    format: Format,
    downloads: &std::path::Path,
    signals: &Signals,
) -> Result<Exit, Failure> {
    let job = Job::start(
        1,
        line,
        api,
        started,
        downloads.to_owned(),
        true,
        Notifier::Stderr,
    );
    let progress = match job.watch(api, signals, signals.now(), false).await {
        Watched::Ended(progress) => progress,
        Watched::Detached => unreachable!("not detachable"),
    };
    let mut stdout = std::io::stdout().lock();
    jobs::report(&progress, format, &mut stdout).or_else(output_error)
}

/// Closes a session, retrying briefly while the broker is unreachable. A session that is already
/// gone counts as closed. Failures are reported, not returned: closing is cleanup.
pub async fn close_session(api: &Client, session: &str) {
    let closed = (|| api.close_session(session))
        .retry(CLOSE_RETRIES)
        .when(|e| e.is_transient())
        .await;
    match closed {
        Ok(()) => {}
        // The id came from the broker: if it no longer knows it, the session is over.
        Err(e) if matches!(e.code(), Some(ErrorCode::NotFound | ErrorCode::Gone)) => {}
        Err(e) => crate::say!(
            "lr: could not close session {session}: {e}; it ends when its lease expires \
             (or: lr session close {session})"
        ),
    }
}

fn report(
    command: &crate::api::Command,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    let mut stdout = std::io::stdout().lock();
    run::report(command, format, Shape::Command, width, &mut stdout).or_else(output_error)
}

/// Confirms an action: `{"<id key>": id, "<done>": true}` in JSON, `sentence` in a table.
pub(crate) fn print_done(
    format: Format,
    width: Option<u16>,
    (key, id): (&str, String),
    done: &str,
    sentence: &str,
) -> Result<Exit, Failure> {
    match format {
        Format::Json => print_doc(
            &run::status_doc(&[(key, Doc::String(id)), (done, Doc::Bool(true))]),
            format,
            width,
        ),
        Format::Table => print_text(sentence),
    }
}

/// A whole list, and on stderr a line when it was longer than the console reads.
fn print_list<T>(
    list: &List<T>,
    what: &str,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    print_rows(&list.doc(), list.cut, what, format, width)
}

/// The items of a list as `doc` shows them, and on stderr a line when the list was `cut`.
pub(crate) fn print_rows(
    doc: &Doc,
    cut: bool,
    what: &str,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    let exit = print_doc(doc, format, width)?;
    if cut {
        crate::say!("lr: the list was cut: only the first {MAX_LIST_ITEMS} {what} are shown");
    }
    Ok(exit)
}

pub(crate) fn print_doc(doc: &Doc, format: Format, width: Option<u16>) -> Result<Exit, Failure> {
    print_text(&render::render(doc, format, width))
}

pub(crate) fn print_text(text: &str) -> Result<Exit, Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map(|()| Exit::Success)
        .or_else(output_error)
}

/// A reader that went away (`lr devices | head -1`) is not a failure; other write errors are.
pub(crate) fn output_error(e: std::io::Error) -> Result<Exit, Failure> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Exit::Success)
    } else {
        Err(Failure::new(
            Exit::Unavailable,
            format!("cannot write output: {e}"),
        ))
    }
}

/// A token in a file others can read is a token others have.
fn warn_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            crate::say!(
                "lr: warning: {} holds a token and others can read it; chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
