//! `lr library upload|list|delete`: the tenant's library on the brokers. Uploads are streamed
//! from the file, with a progress bar on a terminal; the size limit is the broker's to enforce.

use std::path::Path;

use api_model::{ErrorCode, LibraryEntry, LibraryUpload};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::api::{Client, Typed};
use crate::exit::{Exit, Failure};
use crate::progress::Bar;

/// Files smaller than this go up without a progress bar.
const BAR_FROM: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// What an upload is told besides the file.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub name: Option<String>,
    pub description: Option<String>,
    pub parameters_description: Option<String>,
    pub overwrite: bool,
}

/// Uploads `file`; returns the library entry and whether it is new.
pub async fn upload(
    api: &Client,
    file: &Path,
    options: &Upload,
) -> Result<(Typed<LibraryEntry>, bool), Failure> {
    let shown = file.display();
    let meta = tokio::fs::metadata(file)
        .await
        .map_err(|e| Failure::usage(format!("cannot upload {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "cannot upload {shown}: not a regular file"
        )));
    }
    let name = match &options.name {
        Some(name) => name.clone(),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::usage(format!(
                    "cannot upload {shown}: its name is not UTF-8; give one with --name"
                ))
            })?,
    };
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| Failure::usage(format!("cannot upload {shown}: {e}")))?;
    let length = meta.len();
    let bar = (length >= BAR_FROM).then(Bar::new);
    let label = format!("uploading {name}");
    let stream = futures::stream::unfold(
        (opened, bar, 0u64, false),
        move |(mut file, mut bar, mut sent, done)| {
            let label = label.clone();
            async move {
                if done {
                    return None;
                }
                let mut buf = vec![0u8; CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => {
                        if let Some(bar) = bar.as_mut() {
                            bar.clear();
                        }
                        None
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        sent += n as u64;
                        if let Some(bar) = bar.as_mut() {
                            bar.update(&label, sent, length);
                        }
                        Some((Ok::<_, std::io::Error>(buf), (file, bar, sent, false)))
                    }
                    Err(e) => {
                        if let Some(bar) = bar.as_mut() {
                            bar.clear();
                        }
                        Some((Err(e), (file, bar, sent, true)))
                    }
                }
            }
        },
    )
    .boxed();
    let upload = LibraryUpload {
        description: options.description.clone().unwrap_or_default(),
        parameters_description: options.parameters_description.clone().unwrap_or_default(),
        overwrite: options.overwrite,
    };
    api.library_put(&name, &upload, reqwest::Body::wrap_stream(stream), length)
        .await
        .map_err(|e| {
            let code = e.code();
            let failure = Failure::from(e);
            match code {
                Some(ErrorCode::AlreadyExists) => failure.hint(format!(
                    "add --overwrite to replace {name}, or choose another name with --name"
                )),
                Some(ErrorCode::PayloadTooLarge) => failure
                    .hint("the library takes files up to the tenant's limit (250 MB by default)"),
                _ => failure,
            }
        })
}

/// Deletes `name`; a name the library does not have is a usage error that says so.
pub async fn delete(api: &Client, name: &str) -> Result<(), Failure> {
    api.library_delete(name).await.map_err(|e| {
        if e.code() == Some(ErrorCode::NotFound) {
            let mut failure =
                Failure::new(Exit::Usage, format!("the library has no file named {name}"))
                    .hint("lr library list shows its files");
            failure.api_code = Some(ErrorCode::NotFound);
            failure
        } else {
            e.into()
        }
    })
}
