//! Console settings: flags over `LR_*` environment over `~/.config/lr/config.toml`, validated once.
//!
//! The config file holds the same keys as the flags:
//!
//! ```toml
//! api_url = "https://broker.example:7601"   # or a list of the cluster's API nodes:
//! # api_url = ["https://broker-1.example:7601", "https://broker-2.example:7601"]
//! token = "..."
//! tenant = "acme"             # platform admins: the tenant to act in (the LR-Tenant header)
//! ca_cert = "/etc/lr/ca.pem"   # relative paths are relative to the config file
//! output = "table"             # or "json"
//! downloads_dir = "~/lr-downloads"   # where getfile saves files (the default)
//! insecure_http = false        # true allows http:// to a broker on this machine, nothing else
//! ```
//!
//! `--api-url` and `LR_API_URL` take several URLs separated by commas: the API nodes of one
//! cluster, tried in that order when one does not answer. An `http://` API URL would send the
//! bearer token in clear, so it is refused unless its host is loopback and the analyst opted in
//! with `insecure_http`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::api::Endpoint;
use crate::render::Format;

/// Where a value came from, named in error messages so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "flag {name}"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One source of settings; any key may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// One URL per API node, as written (not yet checked).
    pub api_url: Option<(Vec<String>, Origin)>,
    pub token: Option<(String, Origin)>,
    pub tenant: Option<(String, Origin)>,
    pub ca_cert: Option<(PathBuf, Origin)>,
    pub output: Option<(Format, Origin)>,
    pub downloads_dir: Option<(PathBuf, Origin)>,
    pub insecure_http: Option<(bool, Origin)>,
}

/// The file's shape: the same keys, nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    api_url: Option<FileUrls>,
    token: Option<String>,
    tenant: Option<String>,
    ca_cert: Option<PathBuf>,
    output: Option<Format>,
    downloads_dir: Option<PathBuf>,
    insecure_http: Option<bool>,
}

/// `api_url` in the file: one URL, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileUrls {
    One(String),
    Many(Vec<String>),
}

/// The URLs of a comma-separated list, each trimmed; empty ones are kept, for validation to name.
fn split_urls(text: &str) -> Vec<String> {
    text.split(',').map(|url| url.trim().to_owned()).collect()
}

pub const ENV_API_URL: &str = "LR_API_URL";
pub const ENV_TOKEN: &str = "LR_TOKEN";
pub const ENV_TENANT: &str = "LR_TENANT";
pub const ENV_CA_CERT: &str = "LR_CA_CERT";
pub const ENV_OUTPUT: &str = "LR_OUTPUT";
pub const ENV_DOWNLOADS_DIR: &str = "LR_DOWNLOADS_DIR";
pub const ENV_INSECURE_HTTP: &str = "LR_INSECURE_HTTP";
/// Where downloads go when no setting says otherwise, under the home directory.
pub const DEFAULT_DOWNLOADS_DIR: &str = "lr-downloads";
/// Overrides the config file's path; the file must then exist.
pub const ENV_CONFIG: &str = "LR_CONFIG";

impl Layer {
    /// The flags given on the command line.
    pub fn from_flags(
        api_url: Option<String>,
        token: Option<String>,
        tenant: Option<String>,
        ca_cert: Option<PathBuf>,
        output: Option<Format>,
        downloads_dir: Option<PathBuf>,
        insecure_http: bool,
    ) -> Layer {
        Layer {
            api_url: api_url.map(|v| (split_urls(&v), Origin::Flag("--api-url"))),
            token: token.map(|v| (v, Origin::Flag("--token"))),
            tenant: tenant.map(|v| (v, Origin::Flag("--tenant"))),
            ca_cert: ca_cert.map(|v| (v, Origin::Flag("--ca-cert"))),
            output: output.map(|v| (v, Origin::Flag("--output"))),
            downloads_dir: downloads_dir.map(|v| (v, Origin::Flag("--downloads-dir"))),
            // An absent flag says nothing, so the environment or the file may still opt in.
            insecure_http: insecure_http.then_some((true, Origin::Flag("--insecure-http"))),
        }
    }

    /// `LR_API_URL`, `LR_TOKEN`, `LR_TENANT`, `LR_CA_CERT`, `LR_OUTPUT`, `LR_DOWNLOADS_DIR`,
    /// `LR_INSECURE_HTTP` from `get` (the process environment in production, a map in tests). Empty values count as
    /// unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let var = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, Origin::Env(name)))
        };
        let output = match var(ENV_OUTPUT) {
            None => None,
            Some((v, origin)) => Some((
                Format::parse(&v).ok_or_else(|| ConfigError {
                    key: "output",
                    origin: origin.clone(),
                    problem: format!("{v:?} is neither \"json\" nor \"table\""),
                })?,
                origin,
            )),
        };
        let insecure_http = match var(ENV_INSECURE_HTTP) {
            None => None,
            Some((v, origin)) => Some((
                match v.trim() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(ConfigError {
                            key: "insecure_http",
                            origin,
                            problem: format!("{v:?} is neither 1 nor 0"),
                        });
                    }
                },
                origin,
            )),
        };
        Ok(Layer {
            api_url: var(ENV_API_URL).map(|(v, o)| (split_urls(&v), o)),
            token: var(ENV_TOKEN),
            tenant: var(ENV_TENANT),
            ca_cert: var(ENV_CA_CERT).map(|(v, o)| (PathBuf::from(v), o)),
            output,
            downloads_dir: var(ENV_DOWNLOADS_DIR).map(|(v, o)| (PathBuf::from(v), o)),
            insecure_http,
        })
    }

    /// Parses a config file's text; a relative `ca_cert` is taken relative to the file.
    pub fn from_toml(text: &str, path: &Path) -> Result<Layer, ConfigError> {
        let keys: FileKeys = toml::from_str(text).map_err(|e| ConfigError {
            key: "config",
            origin: Origin::File(path.to_owned()),
            problem: e.message().to_owned(),
        })?;
        let origin = || Origin::File(path.to_owned());
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(Layer {
            api_url: keys.api_url.map(|v| {
                let urls = match v {
                    FileUrls::One(url) => split_urls(&url),
                    FileUrls::Many(urls) => urls,
                };
                (urls, origin())
            }),
            token: keys.token.map(|v| (v, origin())),
            tenant: keys.tenant.map(|v| (v, origin())),
            ca_cert: keys.ca_cert.map(|v| (dir.join(v), origin())),
            output: keys.output.map(|v| (v, origin())),
            downloads_dir: keys.downloads_dir.map(|v| {
                let v = if v.starts_with("~") { v } else { dir.join(v) };
                (v, origin())
            }),
            insecure_http: keys.insecure_http.map(|v| (v, origin())),
        })
    }

    /// Reads the config file at `path`; a missing file is an empty layer unless `required`.
    pub fn from_file(path: &Path, required: bool) -> Result<Layer, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Layer::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Layer::default()),
            Err(e) => Err(ConfigError {
                key: "config",
                origin: Origin::File(path.to_owned()),
                problem: format!("cannot read it: {e}"),
            }),
        }
    }

    /// This layer, with the keys it lacks taken from `lower`.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            api_url: self.api_url.or(lower.api_url),
            token: self.token.or(lower.token),
            tenant: self.tenant.or(lower.tenant),
            ca_cert: self.ca_cert.or(lower.ca_cert),
            output: self.output.or(lower.output),
            downloads_dir: self.downloads_dir.or(lower.downloads_dir),
            insecure_http: self.insecure_http.or(lower.insecure_http),
        }
    }
}

/// The config file's path: `$LR_CONFIG`, else `$XDG_CONFIG_HOME/lr/config.toml`, else
/// `$HOME/.config/lr/config.toml`. The flag says whether the file must exist.
pub fn config_path(get: impl Fn(&str) -> Option<String>) -> Option<(PathBuf, bool)> {
    let set = |name: &str| get(name).filter(|v| !v.is_empty());
    if let Some(path) = set(ENV_CONFIG) {
        return Some((PathBuf::from(path), true));
    }
    let base = set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some((base.join("lr").join("config.toml"), false))
}

/// Settings after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first API node, the token and the CA.
    pub endpoint: Endpoint,
    /// The other API nodes, in the order given.
    pub more_nodes: Vec<Url>,
    /// The output format the user chose, if any; commands fall back to their table default.
    pub output: Option<Format>,
    /// Where the endpoint came from, for messages.
    pub api_url_origin: Origin,
    /// Where getfile saves files.
    pub downloads_dir: PathBuf,
    /// The tenant a platform admin acts in, sent as `LR-Tenant` on every request.
    pub tenant: Option<String>,
}

/// A bad or missing setting, naming the key and where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub origin: Origin,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key == "config" {
            write!(f, "{}: {}", self.origin, self.problem)
        } else {
            write!(f, "{} (from {}): {}", self.key, self.origin, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Layer {
    /// Validates the merged settings. `need_token` is false for endpoints without auth; `home`
    /// is the home directory, for `~/` and the default downloads folder.
    pub fn validate(self, need_token: bool) -> Result<Settings, ConfigError> {
        self.validate_in(need_token, std::env::var_os("HOME").map(PathBuf::from))
    }

    pub fn validate_in(
        self,
        need_token: bool,
        home: Option<PathBuf>,
    ) -> Result<Settings, ConfigError> {
        let Some((raw_urls, url_origin)) = self.api_url else {
            return Err(ConfigError {
                key: "api_url",
                origin: Origin::Default,
                problem: "no broker address: pass --api-url, set LR_API_URL, or put api_url in \
                          ~/.config/lr/config.toml"
                    .to_owned(),
            });
        };
        let insecure_http = self.insecure_http.is_some_and(|(on, _)| on);
        let mut urls: Vec<Url> = Vec::with_capacity(raw_urls.len());
        for raw_url in &raw_urls {
            let url = check_url(raw_url, &url_origin, insecure_http)?;
            if urls.contains(&url) {
                return Err(ConfigError {
                    key: "api_url",
                    origin: url_origin,
                    problem: format!("{raw_url:?} is listed twice"),
                });
            }
            urls.push(url);
        }
        let mut urls = urls.into_iter();
        let Some(base) = urls.next() else {
            return Err(ConfigError {
                key: "api_url",
                origin: url_origin,
                problem: "the list of API URLs is empty".to_owned(),
            });
        };
        let token = match self.token {
            Some((token, origin)) => {
                let token = token.trim().to_owned();
                if token.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(ConfigError {
                        key: "token",
                        origin,
                        problem: "contains spaces or control characters".to_owned(),
                    });
                }
                Some(token)
            }
            None if need_token => {
                return Err(ConfigError {
                    key: "token",
                    origin: Origin::Default,
                    problem: "no API token: pass --token, set LR_TOKEN, or put token in \
                              ~/.config/lr/config.toml"
                        .to_owned(),
                });
            }
            None => None,
        };
        let tenant = match self.tenant {
            Some((tenant, origin)) => {
                let tenant = tenant.trim().to_owned();
                ids::tenant(&tenant).map_err(|e| ConfigError {
                    key: "tenant",
                    origin,
                    problem: format!(
                        "{:?} is not a tenant id: {}; {}",
                        e.value,
                        e.reason,
                        e.rule()
                    ),
                })?;
                Some(tenant)
            }
            None => None,
        };
        if let Some((path, origin)) = &self.ca_cert
            && !path.is_file()
        {
            return Err(ConfigError {
                key: "ca_cert",
                origin: origin.clone(),
                problem: format!("{} is not a readable file", path.display()),
            });
        }
        let downloads_dir = match self.downloads_dir {
            Some((path, origin)) => {
                let path = expand_home(&path, home.as_deref()).ok_or_else(|| ConfigError {
                    key: "downloads_dir",
                    origin: origin.clone(),
                    problem: format!("{} starts with ~ but HOME is not set", path.display()),
                })?;
                if path.as_os_str().is_empty() || (path.exists() && !path.is_dir()) {
                    return Err(ConfigError {
                        key: "downloads_dir",
                        origin,
                        problem: format!("{} is not a folder", path.display()),
                    });
                }
                path
            }
            None => home.unwrap_or_default().join(DEFAULT_DOWNLOADS_DIR),
        };
        Ok(Settings {
            more_nodes: urls.collect(),
            downloads_dir,
            tenant,
            endpoint: Endpoint {
                base,
                token,
                ca_cert: self.ca_cert.map(|(p, _)| p),
            },
            output: self.output.map(|(f, _)| f),
            api_url_origin: url_origin,
        })
    }
}

/// One API node's URL, checked: http(s) with a host, and plain HTTP only as [`refuse_cleartext`]
/// allows.
fn check_url(raw_url: &str, origin: &Origin, insecure_http: bool) -> Result<Url, ConfigError> {
    let bad = |problem: String| ConfigError {
        key: "api_url",
        origin: origin.clone(),
        problem,
    };
    if raw_url.trim().is_empty() {
        return Err(bad(
            "an empty URL in the list (a stray comma?); separate API URLs with single commas"
                .to_owned(),
        ));
    }
    let url =
        Url::parse(raw_url.trim()).map_err(|e| bad(format!("{raw_url:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(format!(
            "{raw_url:?} is not an http:// or https:// URL with a host, such as \
             https://broker.example:7601"
        )));
    }
    if url.scheme() == "http" {
        refuse_cleartext(&url, origin, insecure_http)?;
    }
    Ok(url)
}

/// Plain HTTP would carry the bearer token in clear: it is allowed only to this machine, and only
/// when the analyst opted in.
fn refuse_cleartext(url: &Url, origin: &Origin, opted_in: bool) -> Result<(), ConfigError> {
    // The URL parser has already lowercased names and normalised addresses (`127.1`, `[::1]`).
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let shown = url.as_str().trim_end_matches('/');
    let problem = if !loopback {
        format!(
            "refusing {shown}: the API token would cross the network in clear; use https:// \
             (--insecure-http only allows a broker on this machine: localhost, 127.0.0.0/8, ::1)"
        )
    } else if !opted_in {
        format!(
            "refusing {shown}: the API token would be sent in clear; use https://, or for a \
             broker on this machine pass --insecure-http (LR_INSECURE_HTTP=1)"
        )
    } else {
        return Ok(());
    };
    Err(ConfigError {
        key: "api_url",
        origin: origin.clone(),
        problem,
    })
}

/// `~` and `~/x` under `home`; other paths as they are. `None` for `~` without a home.
fn expand_home(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    match path.strip_prefix("~") {
        Ok(rest) => home.map(|h| h.join(rest)),
        Err(_) => Some(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FILE: &str = r#"
        api_url = "https://file.example:7601"
        token = "file-token"
        ca_cert = "ca.pem"
        output = "json"
    "#;

    #[test]
    fn flags_override_env_override_file() {
        let path = Path::new("/home/a/.config/lr/config.toml");
        let file = Layer::from_toml(FILE, path).unwrap();
        let env = Layer::from_env(env(&[
            ("LR_API_URL", "https://env.example:7601"),
            ("LR_TOKEN", "env-token"),
        ]))
        .unwrap();
        let flags = Layer::from_flags(
            None,
            Some("flag-token".into()),
            None,
            None,
            None,
            None,
            false,
        );

        let merged = flags.over(env).over(file);
        assert_eq!(
            merged.api_url,
            Some((
                vec!["https://env.example:7601".to_owned()],
                Origin::Env("LR_API_URL")
            ))
        );
        assert_eq!(
            merged.token,
            Some(("flag-token".into(), Origin::Flag("--token")))
        );
        assert_eq!(
            merged.ca_cert,
            Some((
                PathBuf::from("/home/a/.config/lr/ca.pem"),
                Origin::File(path.to_owned())
            ))
        );
        assert_eq!(merged.output.map(|(f, _)| f), Some(Format::Json));
    }

    #[test]
    fn empty_env_values_are_unset() {
        let layer = Layer::from_env(env(&[("LR_TOKEN", ""), ("LR_API_URL", "  ")])).unwrap();
        assert_eq!(layer, Layer::default());
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        let err = Layer::from_toml(
            "api_url = \"https://x\"\ntokn = \"t\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tokn"), "{err}");
        assert!(err.to_string().contains("c.toml"), "{err}");
    }

    #[test]
    fn validation_names_the_bad_key_and_its_origin() {
        let missing = Layer::default().validate(true).unwrap_err();
        assert_eq!(missing.key, "api_url");
        assert!(missing.to_string().contains("LR_API_URL"));

        let bad = Layer::from_env(env(&[("LR_API_URL", "ftp://x")]))
            .unwrap()
            .validate(false)
            .unwrap_err();
        assert_eq!(bad.key, "api_url");
        assert!(
            bad.to_string().contains("environment variable LR_API_URL"),
            "{bad}"
        );

        let no_token = Layer::from_flags(
            Some("https://127.0.0.1:1".into()),
            None,
            None,
            None,
            None,
            None,
            false,
        )
        .validate(true)
        .unwrap_err();
        assert_eq!(no_token.key, "token");

        let bad_output = Layer::from_env(env(&[("LR_OUTPUT", "yaml")])).unwrap_err();
        assert_eq!(bad_output.key, "output");
    }

    #[test]
    fn valid_settings() {
        let settings = Layer::from_flags(
            Some("https://127.0.0.1:7601".into()),
            Some(" t0k ".into()),
            None,
            None,
            None,
            None,
            false,
        )
        .validate(true)
        .unwrap();
        assert_eq!(settings.endpoint.token.as_deref(), Some("t0k"));
        assert_eq!(settings.output, None);
        assert_eq!(settings.endpoint.base.as_str(), "https://127.0.0.1:7601/");
    }

    #[test]
    fn several_api_urls_from_flag_env_or_file() {
        let settings = Layer::from_env(env(&[(
            "LR_API_URL",
            "https://a.example:7601, https://b.example:7602,https://c.example:7603/",
        )]))
        .unwrap()
        .validate(false)
        .unwrap();
        assert_eq!(settings.endpoint.base.as_str(), "https://a.example:7601/");
        let more: Vec<&str> = settings.more_nodes.iter().map(Url::as_str).collect();
        assert_eq!(more, ["https://b.example:7602/", "https://c.example:7603/"]);

        let path = Path::new("/etc/lr/config.toml");
        let file = Layer::from_toml(
            "api_url = [\"https://a.example:7601\", \"https://b.example:7601\"]\n",
            path,
        )
        .unwrap();
        assert_eq!(file.clone().validate(false).unwrap().more_nodes.len(), 1);
        // A single string stays valid.
        let one = Layer::from_toml("api_url = \"https://a.example:7601\"\n", path).unwrap();
        assert!(one.validate(false).unwrap().more_nodes.is_empty());

        let flag = Layer::from_flags(
            Some("https://x:1,https://y:2".into()),
            None,
            None,
            None,
            None,
            None,
            false,
        );
        assert_eq!(flag.validate(false).unwrap().more_nodes.len(), 1);
    }

    #[test]
    fn a_bad_url_in_the_list_is_named() {
        let check = |list: &str| {
            Layer::from_env(env(&[("LR_API_URL", list)]))
                .unwrap()
                .validate(false)
                .unwrap_err()
                .to_string()
        };
        let text = check("https://a:1,ftp://b:2,https://c:3");
        assert!(
            text.starts_with(
                "api_url (from environment variable LR_API_URL): \"ftp://b:2\" is not"
            ),
            "{text}"
        );
        let text = check("https://a:1,not a url");
        assert!(text.contains("\"not a url\" is not a URL"), "{text}");
        let text = check("https://a:1,,https://c:3");
        assert!(text.contains("empty URL"), "{text}");
        let text = check("https://a:1,https://a:1/");
        assert!(text.contains("listed twice"), "{text}");
        let text = check("https://a:1,http://10.0.0.5:7601");
        assert!(text.contains("refusing http://10.0.0.5:7601"), "{text}");
        let file = Layer::from_toml("api_url = []\n", Path::new("/etc/lr/config.toml"))
            .unwrap()
            .validate(false)
            .unwrap_err();
        assert!(file.to_string().contains("empty"), "{file}");
    }

    #[test]
    fn downloads_dir_default_and_overrides() {
        let base = || {
            Layer::from_flags(
                Some("https://x".into()),
                Some("t".into()),
                None,
                None,
                None,
                None,
                false,
            )
        };
        let home = Some(PathBuf::from("/h"));
        let settings = base().validate_in(true, home.clone()).unwrap();
        assert_eq!(settings.downloads_dir, PathBuf::from("/h/lr-downloads"));

        let env = Layer::from_env(env(&[("LR_DOWNLOADS_DIR", "~/cases/42")])).unwrap();
        let settings = base().over(env).validate_in(true, home.clone()).unwrap();
        assert_eq!(settings.downloads_dir, PathBuf::from("/h/cases/42"));

        let file = Layer::from_toml(
            "downloads_dir = \"evidence\"\n",
            Path::new("/etc/lr/config.toml"),
        )
        .unwrap();
        let settings = base().over(file).validate_in(true, home).unwrap();
        assert_eq!(settings.downloads_dir, PathBuf::from("/etc/lr/evidence"));

        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("f");
        std::fs::write(&not_a_dir, "").unwrap();
        let err = Layer::from_flags(
            Some("https://x".into()),
            Some("t".into()),
            None,
            None,
            None,
            Some(not_a_dir),
            false,
        )
        .validate_in(true, None)
        .unwrap_err();
        assert_eq!(err.key, "downloads_dir");
        assert!(err.to_string().contains("flag --downloads-dir"), "{err}");
    }

    fn with_url(url: &str, insecure_http: bool) -> Result<Settings, ConfigError> {
        Layer::from_flags(
            Some(url.into()),
            Some("t".into()),
            None,
            None,
            None,
            None,
            insecure_http,
        )
        .validate(true)
    }

    #[test]
    fn https_is_accepted_with_or_without_the_opt_in() {
        for url in [
            "https://broker.example:7601",
            "https://10.0.0.5:7601",
            "https://[::1]:7601",
        ] {
            assert_eq!(
                with_url(url, false).unwrap().endpoint.base.scheme(),
                "https"
            );
            assert!(with_url(url, true).is_ok(), "{url}");
        }
    }

    #[test]
    fn http_to_loopback_without_the_opt_in_is_refused() {
        for url in [
            "http://127.0.0.1:7601",
            "http://localhost:7601",
            "http://[::1]:7601",
        ] {
            let err = with_url(url, false).unwrap_err();
            assert_eq!(err.key, "api_url");
            let text = err.to_string();
            assert!(text.contains("refusing http://"), "{text}");
            assert!(text.contains("in clear"), "{text}");
            assert!(text.contains("pass --insecure-http"), "{text}");
        }
    }

    #[test]
    fn http_to_loopback_with_the_opt_in_is_accepted() {
        for url in [
            "http://127.0.0.1:7601",
            "http://127.8.9.10:7601",
            "http://LOCALHOST:7601",
            "http://[::1]:7601",
        ] {
            let settings = with_url(url, true).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(settings.endpoint.base.scheme(), "http");
        }
        // The environment or the file can opt in too, and a higher layer's 0 wins over it.
        let url = || {
            Layer::from_flags(
                Some("http://127.0.0.1:1".into()),
                None,
                None,
                None,
                None,
                None,
                false,
            )
        };
        let env_on = Layer::from_env(env(&[("LR_INSECURE_HTTP", "1")])).unwrap();
        assert!(url().over(env_on).validate(false).is_ok());
        let file_on =
            Layer::from_toml("insecure_http = true\n", Path::new("/etc/lr/config.toml")).unwrap();
        assert!(url().over(file_on.clone()).validate(false).is_ok());
        let env_off = Layer::from_env(env(&[("LR_INSECURE_HTTP", "0")])).unwrap();
        assert!(url().over(env_off).over(file_on).validate(false).is_err());
        let bad = Layer::from_env(env(&[("LR_INSECURE_HTTP", "yes please")])).unwrap_err();
        assert_eq!(bad.key, "insecure_http");
    }

    #[test]
    fn http_to_another_host_is_refused_even_with_the_opt_in() {
        for url in [
            "http://10.0.0.5:7601",
            "http://broker.example:7601",
            "http://localhost.example:7601",
            "http://[::ffff:10.0.0.5]:7601",
        ] {
            let err = with_url(url, true).unwrap_err();
            assert_eq!(err.key, "api_url");
            let text = err.to_string();
            assert!(text.contains("refusing http://"), "{text}");
            assert!(text.contains("cross the network in clear"), "{text}");
            assert!(
                text.contains("only allows a broker on this machine"),
                "{text}"
            );
        }
        let err = with_url("http://10.0.0.5:7601", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "api_url (from flag --api-url): refusing http://10.0.0.5:7601: the API token would \
             cross the network in clear; use https:// (--insecure-http only allows a broker on \
             this machine: localhost, 127.0.0.0/8, ::1)"
        );
    }

    #[test]
    fn tenant_from_flag_env_or_file_is_checked() {
        let url = || {
            Layer::from_flags(
                Some("https://x".into()),
                Some("t".into()),
                None,
                None,
                None,
                None,
                false,
            )
        };
        assert_eq!(url().validate(true).unwrap().tenant, None);
        let file =
            Layer::from_toml("tenant = \"acme\"\n", Path::new("/etc/lr/config.toml")).unwrap();
        let env_layer = Layer::from_env(env(&[("LR_TENANT", "demo")])).unwrap();
        assert_eq!(
            url()
                .over(file.clone())
                .validate(true)
                .unwrap()
                .tenant
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            url()
                .over(env_layer)
                .over(file)
                .validate(true)
                .unwrap()
                .tenant
                .as_deref(),
            Some("demo")
        );
        let flag = Layer::from_flags(None, None, Some("ops".into()), None, None, None, false);
        assert_eq!(
            flag.over(url()).validate(true).unwrap().tenant.as_deref(),
            Some("ops")
        );
        let bad = Layer::from_env(env(&[("LR_TENANT", "acme.eu")]))
            .unwrap()
            .over(url())
            .validate(true)
            .unwrap_err();
        assert_eq!(bad.key, "tenant");
        assert!(
            bad.to_string().starts_with(
                "tenant (from environment variable LR_TENANT): \"acme.eu\" is not a tenant id"
            ),
            "{bad}"
        );
    }

    #[test]
    fn config_path_precedence() {
        assert_eq!(
            config_path(env(&[("LR_CONFIG", "/x.toml"), ("HOME", "/h")])),
            Some((PathBuf::from("/x.toml"), true))
        );
        assert_eq!(
            config_path(env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")])),
            Some((PathBuf::from("/xdg/lr/config.toml"), false))
        );
        assert_eq!(
            config_path(env(&[("HOME", "/h")])),
            Some((PathBuf::from("/h/.config/lr/config.toml"), false))
        );
        assert_eq!(config_path(env(&[])), None);
    }
}
