//! What an `otlp_endpoint` may be: `http://host:port` of an OTLP/gRPC collector.

/// Checks an OTLP/gRPC endpoint; the error says what is wrong and what to write instead.
///
/// Plain `http://` only: this build carries no TLS roots for a collector, and a collector (or
/// its agent) normally runs beside the process or on the local network. The port is required,
/// as `http://host` would silently mean port 80 where collectors listen on 4317.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    const EXAMPLE: &str = "e.g. http://127.0.0.1:4317";
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(if endpoint.starts_with("https://") {
            format!(
                "{endpoint:?}: https is not supported; give the collector's plain http:// gRPC address ({EXAMPLE}), such as a local collector's"
            )
        } else {
            format!("{endpoint:?} is not an http:// URL of an OTLP/gRPC collector ({EXAMPLE})")
        });
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{endpoint:?}: give only the collector's scheme, host and port ({EXAMPLE})"
        ));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!(
            "{endpoint:?} has no port; OTLP/gRPC collectors listen on 4317 ({EXAMPLE})"
        ));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || host == "[]" || (host.contains(':') && !bracketed) {
        return Err(format!(
            "{endpoint:?} has no usable host (an IPv6 address goes in brackets: http://[::1]:4317)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "{endpoint:?} has a bad port {port:?}; use 1 to 65535 ({EXAMPLE})"
        )),
    }
}
