//! Generates the gRPC types and services from `proto/bcos.proto` (needs `protoc`; `scripts/setup.sh`
//! installs it).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::compile_protos("proto/bcos.proto")?;
    Ok(())
}
