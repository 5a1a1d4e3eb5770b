//! Compiles `proto/inference.proto` (the Open Inference Protocol's gRPC service) into the
//! server code `src/predict/grpc.rs` includes: protox parses it (a protobuf compiler in Rust,
//! so no protoc is needed), tonic-prost-build writes the messages and the service trait.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let files = protox::compile(["proto/inference.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(files)?;
    Ok(())
}
