//! Parsers for the kernel's socket tables: /proc/net/{tcp,tcp6,udp,udp6} and /proc/net/unix. Text
//! in, records out; a line that does not parse is `None`, and the caller counts it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP socket tables, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Tcp, Proto::Tcp6, Proto::Udp, Proto::Udp6];

    /// The name shown in the output, which is also the table's file name under /proc/net.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Tcp6 => "tcp6",
            Proto::Udp => "udp",
            Proto::Udp6 => "udp6",
        }
    }

    fn is_v6(self) -> bool {
        matches!(self, Proto::Tcp6 | Proto::Udp6)
    }

    fn is_tcp(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Tcp6)
    }
}

/// One line of /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSocket {
    pub proto: Proto,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// The kernel's state number (`TCP_ESTABLISHED` = 1 ... ); see [`InetSocket::state_name`].
    pub state: u8,
    pub uid: u32,
    /// 0 for sockets no file refers to any more (TIME_WAIT, orphans).
    pub inode: u64,
}

impl InetSocket {
    /// TCP states as `netstat` names them; UDP uses the same numbers, where "closed" means not
    /// connected, which `ss` shows as UNCONN.
    pub fn state_name(&self) -> String {
        let name = match (self.proto.is_tcp(), self.state) {
            (_, 0x01) => "ESTABLISHED",
            (true, 0x02) => "SYN_SENT",
            (true, 0x03) => "SYN_RECV",
            (true, 0x04) => "FIN_WAIT1",
            (true, 0x05) => "FIN_WAIT2",
            (true, 0x06) => "TIME_WAIT",
            (true, 0x07) => "CLOSE",
            (true, 0x08) => "CLOSE_WAIT",
            (true, 0x09) => "LAST_ACK",
            (true, 0x0A) => "LISTEN",
            (true, 0x0B) => "CLOSING",
            (true, 0x0C) => "NEW_SYN_RECV",
            (true, 0x0D) => "BOUND_INACTIVE",
            (false, 0x07) => "UNCONN",
            (_, other) => return format!("UNKNOWN_{other:02X}"),
        };
        name.to_owned()
    }
}

/// Parses one socket line of an IP table:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
pub fn parse_inet_line(proto: Proto, line: &str) -> Option<InetSocket> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix(':')?.parse::<u64>().ok()?;
    let (local, local_port) = endpoint(fields.next()?, proto.is_v6())?;
    let (remote, remote_port) = endpoint(fields.next()?, proto.is_v6())?;
    let state = hex_u8(fields.next()?)?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt
    let _ = (fields.next()?, fields.next()?, fields.next()?);
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(InetSocket {
        proto,
        local,
        local_port,
        remote,
        remote_port,
        state,
        uid,
        inode,
    })
}

/// `ADDR:PORT` with both in hex. The kernel prints each 32-bit word of the address as it lies in
/// memory, read as a native integer (little-endian on x86 and arm64), and the port in host order.
fn endpoint(text: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = (1..=4)
        .contains(&port.len())
        .then(|| hex_digits(port))
        .flatten()
        .and_then(|p| u16::try_from(p).ok())?;
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&hex_word(&addr[i * 8..i * 8 + 8])?.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(hex_word(addr)?.to_ne_bytes()))
    };
    Some((ip, port))
}

/// Exactly eight hex digits.
fn hex_word(text: &str) -> Option<u32> {
    if text.len() != 8 {
        return None;
    }
    hex_digits(text).and_then(|v| u32::try_from(v).ok())
}

fn hex_u8(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 {
        return None;
    }
    hex_digits(text).and_then(|v| u8::try_from(v).ok())
}

/// Hex digits only: `from_str_radix` alone would also take a leading sign.
fn hex_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// One line of /proc/net/unix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// `SOCK_STREAM` = 1, `SOCK_DGRAM` = 2, `SOCK_SEQPACKET` = 5.
    pub kind: u64,
    /// `SS_UNCONNECTED` = 1 ... `SS_DISCONNECTING` = 4.
    pub state: u64,
    pub flags: u64,
    pub inode: u64,
    /// The bound path; abstract names start with '@' (the kernel's notation); `None` when unnamed.
    pub path: Option<String>,
}

/// `__SO_ACCEPTCON`: the socket is listening.
const SO_ACCEPTCON: u64 = 1 << 16;

impl UnixSocket {
    pub fn type_name(&self) -> String {
        match self.kind {
            1 => "stream".to_owned(),
            2 => "dgram".to_owned(),
            5 => "seqpacket".to_owned(),
            other => format!("type_{other}"),
        }
    }

    /// The same words as the IP list uses, as `ss` does.
    pub fn state_name(&self) -> String {
        if self.flags & SO_ACCEPTCON != 0 {
            return "LISTEN".to_owned();
        }
        match self.state {
            0 => "FREE",
            1 => "UNCONN",
            2 => "CONNECTING",
            3 => "ESTABLISHED",
            4 => "DISCONNECTING",
            other => return format!("UNKNOWN_{other:02X}"),
        }
        .to_owned()
    }

    /// "path", "abstract" or "unnamed".
    pub fn address_kind(&self) -> &'static str {
        match &self.path {
            None => "unnamed",
            Some(p) if p.starts_with('@') => "abstract",
            Some(_) => "path",
        }
    }
}

/// Parses `Num: RefCount Protocol Flags Type St Inode [Path]`. The kernel writes one space and then
/// the path as is, so a path keeps its spaces.
pub fn parse_unix_line(line: &str) -> Option<UnixSocket> {
    let (num, rest) = token(line)?;
    num.strip_suffix(':').and_then(hex_digits)?;
    let (_refcount, rest) = token(rest).and_then(|(t, r)| Some((hex_digits(t)?, r)))?;
    let (_protocol, rest) = token(rest).and_then(|(t, r)| Some((hex_digits(t)?, r)))?;
    let (flags, rest) = token(rest).and_then(|(t, r)| Some((hex_digits(t)?, r)))?;
    let (kind, rest) = token(rest).and_then(|(t, r)| Some((hex_digits(t)?, r)))?;
    let (state, rest) = token(rest).and_then(|(t, r)| Some((hex_digits(t)?, r)))?;
    let (inode, rest) = token(rest)?;
    let inode = inode.parse().ok()?;
    let path = rest
        .strip_prefix(' ')
        .filter(|p| !p.trim().is_empty())
        .map(str::to_owned);
    Some(UnixSocket {
        kind,
        state,
        flags,
        inode,
        path,
    })
}

/// The next whitespace-separated token and what follows it (starting at the separator).
fn token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some(text.split_at(end))
}

/// A table's header line, which the kernel writes first.
pub fn is_header(line: &str) -> bool {
    matches!(line.split_whitespace().next(), Some("sl" | "Num"))
}

#[cfg(test)]
mod tests;
