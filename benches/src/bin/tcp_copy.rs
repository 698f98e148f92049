//! `tcp-copy`: copies a file to another file through one TCP connection over loopback, with
//! nothing else on the way: no TLS, no framing, no checksum. The floor that
//! `benches/transfer_throughput.sh` sets getfile and `scp` against; it prints the seconds taken.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "tcp-copy",
    about = "copy a file through one loopback TCP connection"
)]
struct Cli {
    /// The file to send.
    source: PathBuf,
    /// Where the receiving side writes it (created or truncated).
    target: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut source =
        File::open(&cli.source).with_context(|| format!("cannot open {}", cli.source.display()))?;
    let mut target = File::create(&cli.target)
        .with_context(|| format!("cannot create {}", cli.target.display()))?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot listen")?;
    let address = listener.local_addr()?;

    let started = Instant::now();
    // std's `io::copy` moves file→socket with sendfile and socket→file with splice where it can,
    // as a tuned copy tool would.
    let sender = std::thread::spawn(move || -> io::Result<u64> {
        let mut socket = TcpStream::connect(address)?;
        io::copy(&mut source, &mut socket)
    });
    let (mut socket, _) = listener.accept().context("cannot accept")?;
    let received = io::copy(&mut socket, &mut target).context("receiving")?;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?
        .context("sending")?;
    let seconds = started.elapsed().as_secs_f64();
    if sent != received {
        bail!("sent {sent} bytes but received {received}");
    }
    println!("{seconds:.3}");
    Ok(())
}
