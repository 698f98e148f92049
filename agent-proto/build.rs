//! Generates the tonic/prost code from `proto/` with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let config = || {
        let mut config = prost_build::Config::new();
        config.protoc_executable(&protoc);
        config
    };
    tonic_prost_build::configure().compile_with_config(
        config(),
        &["proto/raft.proto", "proto/agent.proto"],
        &["proto"],
    )?;
    // Each package is a flat module of this crate, so bus.proto's references to agent.proto's
    // messages point at `crate::agent` instead of a nested path.
    // Its own folder, so the imported agent package's output does not overwrite the first pass's.
    let bus_out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("bus");
    std::fs::create_dir_all(&bus_out)?;
    tonic_prost_build::configure()
        .out_dir(&bus_out)
        .extern_path(".lr.agent.v1", "crate::agent")
        .compile_with_config(config(), &["proto/bus.proto"], &["proto"])?;
    Ok(())
}
