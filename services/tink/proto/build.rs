//! Generate the message types, clients and servers from `proto/` with protox (a pure-Rust
//! protobuf compiler) and tonic-prost-build: no `protoc` needed at build time.
//!
//! The two `proto.WorkflowService` generations share a package and a service name, so each
//! file is compiled on its own into its own output directory.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for (file, dir) in [
        ("proto/workflow_current.proto", "current"),
        ("proto/workflow_legacy.proto", "legacy"),
        ("proto/worker_logs.proto", "logs"),
    ] {
        println!("cargo:rerun-if-changed={file}");
        let fds = protox::compile([file], ["proto"])?;
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir)?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .out_dir(&dir)
            .compile_fds(fds)?;
    }
    Ok(())
}
