//! Compiles the .proto files with protox (pure Rust), so building needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["lookout/v1/ingest.proto", "prometheus/remote.proto", "loki/push.proto", "otlp/otlp.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
