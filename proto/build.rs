// Generates the gRPC code with a vendored protoc, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure().compile_protos(
        &["proto/types.proto", "proto/agent.proto", "proto/shim.proto"],
        &["proto"],
    )?;
    Ok(())
}
